/*
 * INcDb brain map viewer: NiiVue (WebGL2) driven by Dash clientside callbacks.
 *
 * The layout comes from dashboard/viewer.py. Its dcc.Store "layers" holds the wanted state (layer order, URLs,
 * colormaps, thresholds, ...); every change of it is reconciled into the one NiiVue instance of the page. NiiVue
 * itself (global `niivue`) is served from the installed nilearn package and loaded through Dash external_scripts.
 *
 * Facts this file is built around (DESIGN section 10): NiiVue does not dispose itself when an ancestor of its
 * canvas is removed, so a registry keyed by canvas disposes viewers whose canvas left the document; the canvas
 * parent must have a size before attachToCanvas; cal_minNeg/cal_maxNeg are set on the loaded volume; settings
 * arriving during the async load are kept and applied after it; location events are throttled.
 */
(function () {
  "use strict";

  const ID_PREFIX = "incdb-viewer-";
  const LOCATION_THROTTLE_MS = 120;
  const CANVAS_WAIT_MS = 120000;
  const SLICE_TYPES = { axial: 0, coronal: 1, sagittal: 2, multiplanar: 3, "multiplanar-3d": 3, render: 4 };
  const SHOW_RENDER = { NEVER: 0, ALWAYS: 1 };
  const NO_NEGATIVE = "none"; // select value standing for an empty colormap_negative (see dashboard/viewer.py)

  /** canvas element -> viewer entry; one NiiVue per canvas, disposed when the canvas leaves the document. */
  const registry = new Map();

  // ----------------------------------------------------------------------------------------------- helpers

  function pid(kind, viewerId) {
    return { type: ID_PREFIX + kind, viewer: viewerId };
  }

  function noUpdate() {
    return window.dash_clientside.no_update;
  }

  function finite(value, fallback) {
    const n = typeof value === "string" && value.trim() === "" ? NaN : Number(value);
    return value !== null && value !== undefined && Number.isFinite(n) ? n : fallback;
  }

  function clamp(value, lo, hi) {
    return Math.min(hi, Math.max(lo, value));
  }

  /** Readable number: up to 4 significant digits, no exponent for everyday magnitudes. */
  function formatValue(value) {
    if (!Number.isFinite(value)) return "–";
    if (value === 0) return "0";
    const abs = Math.abs(value);
    if (abs >= 1e5 || abs < 1e-3) return value.toExponential(2);
    return String(parseFloat(value.toPrecision(4)));
  }

  function formatMM(value) {
    return String(Math.round(value * 10) / 10 + 0); // "+ 0" turns -0 into 0
  }

  /** Calls fn at most every `ms`, always delivering the latest arguments (trailing call). */
  function throttle(fn, ms) {
    let last = 0;
    let timer = null;
    let latest = null;
    return function (...args) {
      latest = args;
      const wait = last + ms - performance.now();
      if (wait <= 0 && timer === null) {
        last = performance.now();
        fn(...latest);
      } else if (timer === null) {
        timer = setTimeout(() => {
          timer = null;
          last = performance.now();
          fn(...latest);
        }, Math.max(wait, 0));
      }
    };
  }

  function setProps(id, props) {
    if (window.dash_clientside && typeof window.dash_clientside.set_props === "function") {
      window.dash_clientside.set_props(id, props);
    }
  }

  function rootOf(viewerId) {
    return document.getElementById(viewerId);
  }

  function canvasOf(viewerId) {
    return document.getElementById(viewerId + "-canvas");
  }

  /** Resolves once the element has a non-zero size (NiiVue sizes its canvas from the parent once, on attach). */
  function waitForSize(element, isCancelled) {
    return new Promise((resolve) => {
      const ready = () => element.clientWidth > 0 && element.clientHeight > 0;
      if (ready()) return resolve();
      // A viewer in a hidden tab or collapsed panel waits here until it is shown.
      const observer = new ResizeObserver(() => {
        if (isCancelled()) observer.disconnect();
        else if (ready()) {
          observer.disconnect();
          resolve();
        }
      });
      observer.observe(element);
    });
  }

  // ------------------------------------------------------------------------------------------- lifecycle

  function sweep() {
    for (const [canvas, entry] of registry) {
      if (!canvas.isConnected) dispose(entry);
    }
  }

  function dispose(entry) {
    if (entry.disposed) return;
    entry.disposed = true;
    registry.delete(entry.canvas);
    const nv = entry.nv;
    try {
      nv.cleanup();
    } catch (err) {
      console.warn("incdb-viewer: cleanup failed", err);
    }
    // Browsers cap live WebGL contexts per page; a detached canvas keeps its context until GC, so drop it now.
    const gl = nv._gl || null;
    if (gl) {
      const lose = gl.getExtension("WEBGL_lose_context");
      if (lose) lose.loseContext();
    }
    nv.volumes = [];
  }

  // Page navigation in Dash replaces whole subtrees; watching removals lets us dispose promptly.
  let sweepScheduled = false;
  const domObserver = new MutationObserver((mutations) => {
    if (sweepScheduled || registry.size === 0) return;
    if (!mutations.some((m) => m.removedNodes.length > 0)) return;
    sweepScheduled = true;
    queueMicrotask(() => {
      sweepScheduled = false;
      sweep();
    });
  });
  function observeDocument() {
    if (document.body) domObserver.observe(document.body, { childList: true, subtree: true });
    else document.addEventListener("DOMContentLoaded", observeDocument, { once: true });
  }
  observeDocument();

  function createEntry(viewerId, canvas) {
    sweep();
    const nv = new niivue.Niivue({
      backColor: [0, 0, 0, 1],
      crosshairColor: [0.2, 0.9, 0.3, 1],
      crosshairWidth: 1,
      show3Dcrosshair: true,
      isColorbar: false,
      dragAndDropEnabled: false,
      multiplanarShowRender: SHOW_RENDER.NEVER,
      loadingText: "loading…",
      logLevel: "warn",
    });
    const entry = {
      viewerId,
      canvas,
      nv,
      disposed: false,
      volumes: new Map(), // layer key -> NVImage
      failed: new Map(), // "key url" -> error message, not retried
      desired: null,
      view: "multiplanar",
      pendingGoto: null,
      running: false,
      dirty: false,
      lastInfo: "",
      ready: null,
    };
    entry.publishLocation = throttle((payload) => {
      if (!entry.disposed) setProps(pid("location", viewerId), { data: payload });
    }, LOCATION_THROTTLE_MS);
    nv.onLocationChange = (data) => {
      if (!entry.disposed) entry.publishLocation(locationPayload(entry, data));
    };
    entry.ready = waitForSize(canvas.parentElement, () => entry.disposed || !canvas.isConnected).then(() =>
      nv.attachToCanvas(canvas)
    );
    registry.set(canvas, entry);
    return entry;
  }

  function entryFor(viewerId, create) {
    const canvas = canvasOf(viewerId);
    if (!canvas) return null;
    const existing = registry.get(canvas);
    if (existing || !create) return existing || null;
    if (typeof niivue === "undefined") {
      setStatus(viewerId, { error: "NiiVue did not load (external script missing)" });
      return null;
    }
    return createEntry(viewerId, canvas);
  }

  // -------------------------------------------------------------------------------------- reconciliation

  function schedule(entry) {
    if (entry.running) {
      entry.dirty = true; // picked up by the running loop: late settings are never lost
      return;
    }
    entry.running = true;
    (async () => {
      try {
        await entry.ready;
        do {
          entry.dirty = false;
          if (entry.disposed) return;
          await reconcile(entry);
        } while (entry.dirty);
      } catch (err) {
        console.error("incdb-viewer:", err);
        setStatus(entry.viewerId, { error: String((err && err.message) || err) });
      } finally {
        entry.running = false;
      }
    })();
  }

  async function reconcile(entry) {
    const nv = entry.nv;
    const layers = entry.desired || [];
    const wanted = new Map(layers.map((layer) => [layer.key, layer]));

    for (const [key, vol] of entry.volumes) {
      const layer = wanted.get(key);
      if (!layer || layer.url !== vol.incdbUrl) {
        nv.removeVolume(vol);
        entry.volumes.delete(key);
      }
    }

    const missing = layers.filter(
      (layer) => layer.url && !entry.volumes.has(layer.key) && !entry.failed.has(layer.key + " " + layer.url)
    );
    if (missing.length > 0) {
      setStatus(entry.viewerId, { loaded: false, nvols: nv.volumes.length });
      const results = await Promise.allSettled(missing.map((layer) => loadVolume(layer)));
      if (entry.disposed) return;
      results.forEach((result, i) => {
        const layer = missing[i];
        if (result.status === "fulfilled") {
          const vol = result.value;
          vol.incdbKey = layer.key;
          vol.incdbUrl = layer.url;
          entry.volumes.set(layer.key, vol);
          nv.addVolume(vol);
        } else {
          const message = `${layer.name || layer.key}: ${(result.reason && result.reason.message) || result.reason}`;
          entry.failed.set(layer.key + " " + layer.url, message);
          console.error("incdb-viewer: could not load", layer.url, result.reason);
        }
      });
    }

    // Bottom layer first, as NiiVue draws volumes[0] as the background.
    const ordered = layers.map((layer) => entry.volumes.get(layer.key)).filter(Boolean);
    ordered.forEach((vol, index) => {
      if (nv.volumes[index] !== vol) nv.setVolume(vol, index);
    });
    for (const layer of layers) {
      const vol = entry.volumes.get(layer.key);
      if (vol) applyLayer(nv, vol, layer);
    }
    applyView(nv, entry.view);
    if (nv.volumes.length > 0) nv.updateGLVolume();

    if (entry.pendingGoto && nv.volumes.length > 0) {
      moveCrosshairToMM(nv, entry.pendingGoto);
      entry.pendingGoto = null;
    } else if (nv.volumes.length > 0) {
      nv.createOnLocationChange(); // visibility and frames change the values shown in the readout
    }

    publishInfo(entry);
    const errors = Array.from(entry.failed.values());
    setStatus(entry.viewerId, { loaded: true, nvols: nv.volumes.length, error: errors.join("; ") });
  }

  async function loadVolume(layer) {
    const buffer = await fetchNifti(layer.url);
    return niivue.NVImage.loadFromUrl({
      url: layer.url,
      buffer, // already fetched and decoded here; NiiVue then picks the reader from the name
      name: `${layer.key}.nii`,
      colormap: layer.colormap || (layer.underlay ? "gray" : "warm"),
      opacity: 0, // shown by applyLayer once thresholds are in place, so no frame flashes with defaults
    });
  }

  // ------------------------------------------------------------------------------- display copy decoding

  /** Plain NIfTI-1 bytes of a map URL: gunzipped, and Lorenzo prediction undone (pipeline/display.py). */
  async function fetchNifti(url) {
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`${response.status} ${response.statusText || "error"} for ${url}`);
    let bytes = new Uint8Array(await response.arrayBuffer());
    if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
      if (typeof DecompressionStream === "undefined") {
        throw new Error("this browser cannot unpack brain maps (no DecompressionStream): please use a current browser");
      }
      const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
      bytes = new Uint8Array(await new Response(stream).arrayBuffer());
    }
    undoPrediction(bytes);
    return bytes.buffer;
  }

  const PREDICTED_INTENT = "incdb-lorenzo3d";
  const NIFTI1_HEADER_BYTES = 348;

  /**
   * A display copy marked with intent_name "incdb-lorenzo3d" holds residuals of the 3D Lorenzo predictor of its
   * uint8 codes, modulo 256. Three running sums (along x, y, z, volume by volume) give the codes back, in place;
   * a Uint8Array wraps on assignment, which is the modulo. Unmarked files are left as they are.
   */
  function undoPrediction(bytes) {
    if (bytes.length < NIFTI1_HEADER_BYTES + 4) return;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const little = view.getInt32(0, true) === NIFTI1_HEADER_BYTES;
    if (!little && view.getInt32(0, false) !== NIFTI1_HEADER_BYTES) return; // not NIfTI-1: NiiVue will say so
    let intent = "";
    for (let i = 328; i < 344 && bytes[i] !== 0; i++) intent += String.fromCharCode(bytes[i]);
    if (intent !== PREDICTED_INTENT) return;
    if (view.getInt16(70, little) !== 2) throw new Error("predicted display copy is not uint8");
    const ndim = view.getInt16(40, little);
    const dim = [1, 2, 3, 4].map((i) => (i <= ndim ? Math.max(1, view.getInt16(40 + 2 * i, little)) : 1));
    const [nx, ny, nz, nt] = dim;
    const offset = Math.round(view.getFloat32(108, little));
    const slab = nx * ny;
    const volume = slab * nz;
    if (offset < NIFTI1_HEADER_BYTES || offset + volume * nt > bytes.length) {
      throw new Error("display copy is shorter than its header says");
    }
    const data = bytes.subarray(offset, offset + volume * nt);
    for (let base = 0; base < data.length; base += volume) {
      for (let row = base; row < base + volume; row += nx) {
        for (let i = row + 1; i < row + nx; i++) data[i] += data[i - 1];
      }
      for (let z = base; z < base + volume; z += slab) {
        for (let i = z + nx; i < z + slab; i++) data[i] += data[i - nx];
      }
      for (let i = base + slab; i < base + volume; i++) data[i] += data[i - slab];
    }
    bytes.fill(0, 328, 344);
  }

  function applyLayer(nv, vol, layer) {
    const colormap = layer.colormap || (layer.underlay ? "gray" : "warm");
    // The colormap setter recomputes cal_min/cal_max, so it must come before the thresholds.
    if (vol.colormap !== colormap) vol.colormap = colormap;
    if (layer.underlay) {
      vol.colormapNegative = "";
      if (layer.threshold !== null && layer.threshold !== undefined) vol.cal_min = finite(layer.threshold, vol.cal_min);
      if (layer.max !== null && layer.max !== undefined) vol.cal_max = finite(layer.max, vol.cal_max);
    } else {
      const threshold = Math.max(0, finite(layer.threshold, 0));
      const top = finite(layer.max, vol.global_max);
      vol.cal_min = threshold;
      vol.cal_max = Math.max(top, threshold + Math.max(1e-6, threshold * 1e-6));
      vol.colormapNegative = layer.colormap_negative || "";
      const thresholdNeg = Math.abs(finite(layer.threshold_negative, threshold));
      const bottom = finite(layer.min, vol.global_min);
      // loadFromUrl/loadVolumes leave these NaN; NiiVue then mirrors the positive range, which we do not want.
      vol.cal_minNeg = -thresholdNeg;
      vol.cal_maxNeg = Math.min(bottom, -thresholdNeg - Math.max(1e-6, thresholdNeg * 1e-6));
    }
    vol.opacity = layer.visible === false ? 0 : clamp(finite(layer.opacity, 1), 0, 1);
    if (vol.nFrame4D > 1) {
      const frame = clamp(Math.round(finite(layer.frame, 0)), 0, vol.nFrame4D - 1);
      if (frame !== vol.frame4D) nv.setFrame4D(vol.id, frame);
    }
  }

  function applyView(nv, view) {
    const sliceType = view in SLICE_TYPES ? SLICE_TYPES[view] : SLICE_TYPES.multiplanar;
    nv.opts.multiplanarShowRender = view === "multiplanar-3d" ? SHOW_RENDER.ALWAYS : SHOW_RENDER.NEVER;
    if (nv.opts.sliceType !== sliceType) nv.setSliceType(sliceType);
  }

  function moveCrosshairToMM(nv, mm) {
    const frac = nv.mm2frac(mm);
    nv.scene.crosshairPos = [0, 1, 2].map((i) => clamp(frac[i], 0, 1));
    nv.drawScene();
    nv.createOnLocationChange();
  }

  function publishInfo(entry) {
    const info = {};
    for (const [key, vol] of entry.volumes) {
      info[key] = { min: vol.global_min, max: vol.global_max, frames: vol.nFrame4D || 1 };
    }
    const json = JSON.stringify(info);
    if (json !== entry.lastInfo) {
      entry.lastInfo = json;
      setProps(pid("info", entry.viewerId), { data: info });
    }
  }

  /** data-* attributes on the viewer root for tests and for pages that wait on the viewer. */
  function setStatus(viewerId, { loaded, nvols, error }) {
    const root = rootOf(viewerId);
    if (!root) return;
    if (loaded !== undefined) root.dataset.loaded = loaded ? "true" : "false";
    if (nvols !== undefined) root.dataset.nvols = String(nvols);
    if (error !== undefined) {
      if (error) root.dataset.error = error;
      else delete root.dataset.error;
    }
  }

  function locationPayload(entry, data) {
    const byId = new Map();
    for (const layer of entry.desired || []) {
      const vol = entry.volumes.get(layer.key);
      if (vol) byId.set(vol.id, layer);
    }
    const values = [];
    for (const item of data.values || []) {
      const layer = byId.get(item.id);
      if (!layer || layer.visible === false) continue;
      values.push({ key: layer.key, name: layer.name || layer.key, value: Number(item.value) });
    }
    return {
      mm: Array.from(data.mm).slice(0, 3).map((v) => Math.round(v * 100) / 100),
      vox: Array.from(data.vox).slice(0, 3),
      values: values.reverse(), // top layer first, as in the layer list
    };
  }

  /** viewer id -> the latest wanted state of a viewer whose canvas is not in the document yet. */
  const waitingForCanvas = new Map();

  /** Sync now, or once the canvas is mounted (e.g. a viewer inside a tab that is not rendered yet). */
  function syncWhenMounted(viewerId, layers, view) {
    const waiting = waitingForCanvas.get(viewerId);
    waitingForCanvas.set(viewerId, { layers, view, since: waiting ? waiting.since : performance.now() });
    if (!waiting) trySync(viewerId);
  }

  function trySync(viewerId) {
    const wanted = waitingForCanvas.get(viewerId);
    const entry = entryFor(viewerId, true);
    if (entry) {
      waitingForCanvas.delete(viewerId);
      entry.desired = wanted.layers;
      entry.view = wanted.view;
      schedule(entry);
    } else if (canvasOf(viewerId) === null && performance.now() - wanted.since < CANVAS_WAIT_MS) {
      setTimeout(() => trySync(viewerId), 250);
    } else {
      waitingForCanvas.delete(viewerId); // NiiVue missing (reported on the root) or gave up waiting
    }
  }

  // -------------------------------------------------------------------------------- clientside callbacks

  function layerIndex(layers, key) {
    return layers.findIndex((layer) => layer.key === key);
  }

  function niceStep(span) {
    if (!(span > 0)) return 0.01;
    const raw = span / 200;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    return [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  }

  function sliderRange(limit) {
    const max = limit > 0 ? parseFloat(limit.toPrecision(4)) : 1;
    return { max, step: niceStep(max), marks: { 0: "0", [max]: formatValue(max) } };
  }

  /** Viewer root element -> last rendered layer list (a new root after navigation starts afresh). */
  const listSignatures = new WeakMap();

  function h(type, props, children) {
    const all = Object.assign({}, props);
    if (children !== undefined) all.children = children;
    return { type, namespace: "dash_html_components", props: all };
  }

  const callbacks = {
    /** layers store or view -> NiiVue. */
    sync(layers, view, config) {
      syncWhenMounted(config.id, Array.isArray(layers) ? layers : [], view || "multiplanar");
      return noUpdate();
    },

    gotoCoordinate(nClicks, submitX, submitY, submitZ, x, y, z, config) {
      const mm = [x, y, z].map((v) => finite(v, NaN));
      if (mm.some((v) => !Number.isFinite(v))) return noUpdate();
      const entry = entryFor(config.id, true);
      if (!entry) return noUpdate();
      entry.pendingGoto = mm;
      schedule(entry);
      return noUpdate();
    },

    /** location store -> readout and the go-to fields. */
    renderReadout(location) {
      if (!location || !location.mm) return [noUpdate(), noUpdate(), noUpdate(), noUpdate()];
      const mm = location.mm.map(formatMM);
      const rows = (location.values || []).map((item) =>
        h("Div", { className: "incdb-readout-value" }, [
          h("Span", { className: "incdb-readout-name" }, item.name),
          h("Span", { className: "incdb-readout-number", "data-layer": item.key }, formatValue(item.value)),
        ])
      );
      const coords = h("Div", { className: "incdb-readout-coords", "data-mm": mm.join(",") }, [
        h("Span", { className: "incdb-readout-label" }, "MNI"),
        `x = ${mm[0]}, y = ${mm[1]}, z = ${mm[2]} mm`,
      ]);
      return [[coords].concat(rows), ...location.mm.map((v) => Math.round(v * 10) / 10 + 0)];
    },

    /** Layer list, top layer first; rendered from the store so it never touches the canvas subtree. */
    renderLayerList(layers, selected, config) {
      layers = Array.isArray(layers) ? layers : [];
      const viewer = config.id;
      // Slider drags rewrite the store many times a second; re-render only when the list itself changes.
      const root = rootOf(viewer);
      const signature = JSON.stringify([
        selected,
        layers.map((l) => [l.key, l.name, l.visible !== false, l.download_url, !!l.underlay]),
      ]);
      if (root && listSignatures.get(root) === signature) return noUpdate();
      if (root) listSignatures.set(root, signature);
      const button = (layer, action, label, text, disabled) =>
        h(
          "Button",
          {
            id: { type: ID_PREFIX + "layer-action", viewer, layer: layer.key, action },
            className: `btn btn-sm btn-outline-primary incdb-layer-${action}`,
            title: label,
            "aria-label": label,
            disabled: !!disabled,
            n_clicks: 0,
          },
          text
        );
      const rows = [];
      for (let i = layers.length - 1; i >= 0; i--) {
        const layer = layers[i];
        const name = layer.name || layer.key;
        const hidden = layer.visible === false;
        const controls = [
          button(layer, "toggle", `${hidden ? "Show" : "Hide"} layer ${name}`, hidden ? "Show" : "Hide"),
        ];
        if (!layer.underlay) {
          controls.push(
            button(layer, "up", `Move layer ${name} up`, "▲", i === layers.length - 1),
            button(layer, "down", `Move layer ${name} down`, "▼", i <= 1),
            button(layer, "remove", `Remove layer ${name}`, "✕")
          );
        }
        if (layer.download_url) {
          controls.push(
            h(
              "A",
              {
                href: layer.download_url,
                download: "",
                className: "btn btn-sm btn-outline-primary incdb-layer-download",
                title: `Download ${name} (full precision NIfTI)`,
                "aria-label": `Download layer ${name}`,
              },
              "⤓"
            )
          );
        }
        rows.push(
          h(
            "Li",
            {
              className:
                "list-group-item incdb-layer" +
                (layer.key === selected ? " active" : "") +
                (hidden ? " incdb-layer-hidden" : ""),
              "data-layer": layer.key,
            },
            [
              button(layer, "select", `Select layer ${name}`, name),
              h("Span", { className: "incdb-layer-controls" }, controls),
            ]
          )
        );
      }
      return h("Ul", { className: "list-group incdb-layer-list" }, rows);
    },

    /** Buttons of the layer list -> layers store and selection. */
    layerAction(clicks, layers, selected) {
      const ctx = window.dash_clientside.callback_context;
      const trigger = ctx.triggered_id;
      const fired = (ctx.triggered || []).some((t) => t.value);
      if (!trigger || !fired || !Array.isArray(layers)) return [noUpdate(), noUpdate()];
      const next = layers.map((layer) => Object.assign({}, layer));
      const index = layerIndex(next, trigger.layer);
      if (index < 0) return [noUpdate(), noUpdate()];
      const layer = next[index];
      switch (trigger.action) {
        case "select":
          return [noUpdate(), layer.key];
        case "toggle":
          layer.visible = layer.visible === false;
          return [next, noUpdate()];
        case "up":
          if (layer.underlay || index >= next.length - 1) return [noUpdate(), noUpdate()];
          [next[index], next[index + 1]] = [next[index + 1], next[index]];
          return [next, noUpdate()];
        case "down":
          if (layer.underlay || index <= 1 || next[index - 1].underlay) return [noUpdate(), noUpdate()];
          [next[index], next[index - 1]] = [next[index - 1], next[index]];
          return [next, noUpdate()];
        case "remove": {
          if (layer.underlay) return [noUpdate(), noUpdate()];
          next.splice(index, 1);
          const newSelected = selected === layer.key ? next[next.length - 1].key : noUpdate();
          return [next, newSelected];
        }
        default:
          return [noUpdate(), noUpdate()];
      }
    },

    /** Selected layer (or newly known data ranges, or frame buttons) -> the settings controls. */
    controlsFromSelection(selected, info, prevClicks, nextClicks, layers, frameValue) {
      const ctx = window.dash_clientside.callback_context;
      // Only real clicks step: a viewer inserted by navigation arrives with n_clicks 0.
      const stepped = (ctx.triggered || []).find((t) => t.value && /frame-(prev|next)/.test(t.prop_id));
      layers = Array.isArray(layers) ? layers : [];
      const layer = layers.find((l) => l.key === selected) || layers[layers.length - 1];
      if (!layer) return Array(19).fill(noUpdate());
      const stats = (info && info[layer.key]) || {};
      const overlay = !layer.underlay;

      const threshold = Math.max(0, finite(layer.threshold, 0));
      const posLimit = Math.max(finite(layer.max, finite(stats.max, 0)), threshold, 0);
      const pos = sliderRange(posLimit);
      const thresholdNeg = Math.abs(finite(layer.threshold_negative, threshold));
      const negLimit = Math.max(-finite(layer.min, finite(stats.min, 0)), thresholdNeg, 0);
      const neg = sliderRange(negLimit);

      const frames = Math.max(1, Math.round(finite(stats.frames, 1)));
      let frame = clamp(Math.round(finite(layer.frame, 0)), 0, frames - 1);
      if (stepped) {
        const current = clamp(Math.round(finite(frameValue, frame + 1)) - 1, 0, frames - 1);
        frame = clamp(current + (stepped.prop_id.includes("frame-next") ? 1 : -1), 0, frames - 1);
      }

      return [
        layer.colormap || (overlay ? "warm" : "gray"),
        layer.colormap_negative || NO_NEGATIVE,
        !overlay,
        pos.max,
        pos.step,
        Math.min(threshold, pos.max),
        pos.marks,
        !overlay,
        neg.max,
        neg.step,
        Math.min(thresholdNeg, neg.max),
        neg.marks,
        !overlay,
        clamp(finite(layer.opacity, 1), 0, 1),
        frame + 1,
        frames,
        `of ${frames}`,
        frames > 1 ? {} : { display: "none" },
        layer.name || layer.key,
      ];
    },

    /** Settings controls -> the selected layer in the store. */
    controlsToLayers(colormap, colormapNeg, threshold, thresholdNeg, opacity, frame, layers, selected) {
      if (!Array.isArray(layers)) return noUpdate();
      const index = layerIndex(layers, selected);
      if (index < 0) return noUpdate();
      const layer = layers[index];
      const changes = { opacity: clamp(finite(opacity, 1), 0, 1) };
      if (colormap) changes.colormap = colormap;
      if (!layer.underlay) {
        changes.colormap_negative = colormapNeg && colormapNeg !== NO_NEGATIVE ? colormapNeg : "";
        changes.threshold = Math.max(0, finite(threshold, 0));
        changes.threshold_negative = Math.abs(finite(thresholdNeg, changes.threshold));
      }
      const frameIndex = Math.round(finite(frame, 1)) - 1;
      if (frameIndex >= 0) changes.frame = frameIndex;
      const same = Object.keys(changes).every((k) => layer[k] === changes[k]);
      if (same) return noUpdate();
      const next = layers.slice();
      next[index] = Object.assign({}, layer, changes);
      return next;
    },
  };

  // Extend in place: dash-renderer keeps set_props, no_update and callback_context on the same object.
  window.dash_clientside = window.dash_clientside || {};
  window.dash_clientside.incdbViewer = callbacks;

  // ---------------------------------------------------------------------------------------- public API

  window.incdbViewer = {
    /** The NiiVue instance of a viewer root id, or null before the first sync. */
    get(rootId) {
      const entry = entryFor(rootId, false);
      return entry ? entry.nv : null;
    },
    /** Loaded volume of a layer key. */
    volume(rootId, key) {
      const entry = entryFor(rootId, false);
      return entry ? entry.volumes.get(key) || null : null;
    },
    /** Number of live viewers (after disposing the ones whose canvas is gone). */
    count() {
      sweep();
      return registry.size;
    },
    /** Move the crosshair to MNI mm coordinates (applied after loading if called early). */
    goto(rootId, mm) {
      const entry = entryFor(rootId, true);
      if (!entry) return false;
      entry.pendingGoto = mm.map(Number);
      schedule(entry);
      return true;
    },
    /** Current crosshair position in MNI mm. */
    crosshairMM(rootId) {
      const nv = this.get(rootId);
      return nv && nv.volumes.length ? Array.from(nv.frac2mm(nv.scene.crosshairPos, 0, true)).slice(0, 3) : null;
    },
    dispose(rootId) {
      const entry = entryFor(rootId, false);
      if (entry) dispose(entry);
    },
    sweep,
  };
})();
