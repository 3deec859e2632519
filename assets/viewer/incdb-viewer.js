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
 *
 * Also here: the view state in the page address (v_* query parameters, written with history.replaceState so the
 * Dash router never re-renders the page; the layout reads them, dashboard/viewstate.py), "Copy link", "Save image"
 * (the WebGL canvas with the selected layer's colorbar, named after the map), the colorbar canvas under the view,
 * the mosaic view, arrow keys that move the crosshair one grid voxel (2 mm), and the region at the crosshair read
 * from the atlas API (web/anatomy.py).
 */
(function () {
  "use strict";

  const ID_PREFIX = "incdb-viewer-";
  const LOCATION_THROTTLE_MS = 120;
  const CANVAS_WAIT_MS = 120000;
  const SLICE_TYPES = { axial: 0, coronal: 1, sagittal: 2, multiplanar: 3, "multiplanar-3d": 3, render: 4, mosaic: 0 };
  const URL_PREFIX = "v_"; // query parameters of the view state; layer keys follow it (v_component=...)
  const URL_WRITE_MS = 250;
  const VOXEL_MM = 2; // the standard grid's voxel size: one arrow key press moves the crosshair this far
  const MOSAIC_PATTERN = /^[ACSLRVHX0-9\s.;+-]{0,200}$/i;
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
    if (entry.colorbarObserver) entry.colorbarObserver.disconnect();
    if (entry.urlTimer) clearTimeout(entry.urlTimer);
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
      mosaic: "",
      selected: null,
      initialMM: null, // crosshair after the first load: the URL carries the crosshair only once it moved
    };
    entry.publishLocation = throttle((payload) => {
      if (!entry.disposed) setProps(pid("location", viewerId), { data: payload });
    }, LOCATION_THROTTLE_MS);
    nv.onLocationChange = (data) => {
      if (entry.disposed) return;
      entry.publishLocation(locationPayload(entry, data));
      scheduleUrlWrite(entry);
    };
    canvas.tabIndex = 0; // focusable, so arrow keys reach it (a click focuses it too)
    canvas.addEventListener("keydown", (event) => onKey(entry, event));
    const bar = colorbarCanvasOf(viewerId);
    if (bar) {
      entry.colorbarObserver = new ResizeObserver(() => drawColorbar(entry));
      entry.colorbarObserver.observe(bar);
    }
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
    applyView(nv, entry.view, entry.mosaic);
    if (nv.volumes.length > 0) nv.updateGLVolume();

    if (nv.volumes.length > 0 && entry.initialMM === null) entry.initialMM = currentMM(nv);
    if (entry.pendingGoto && nv.volumes.length > 0) {
      moveCrosshairToMM(nv, entry.pendingGoto);
      entry.pendingGoto = null;
    } else if (nv.volumes.length > 0) {
      nv.createOnLocationChange(); // visibility and frames change the values shown in the readout
    }

    drawColorbar(entry);
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

  /** Plain NIfTI-1 bytes of a map URL: gunzipped, and Lorenzo prediction undone (pipeline/maps/display.py). */
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

  function applyView(nv, view, mosaic) {
    const sliceType = view in SLICE_TYPES ? SLICE_TYPES[view] : SLICE_TYPES.multiplanar;
    nv.opts.multiplanarShowRender = view === "multiplanar-3d" ? SHOW_RENDER.ALWAYS : SHOW_RENDER.NEVER;
    if (nv.opts.sliceType !== sliceType) nv.setSliceType(sliceType);
    const wanted = view === "mosaic" ? cleanMosaic(mosaic) : "";
    if ((nv.sliceMosaicString || "") !== wanted) nv.setSliceMosaicString(wanted);
  }

  function cleanMosaic(text) {
    const value = typeof text === "string" ? text.trim() : "";
    return value && MOSAIC_PATTERN.test(value) && /[0-9]/.test(value) ? value : "A -24 -8 8 24 40 56";
  }

  function currentMM(nv) {
    return Array.from(nv.frac2mm(nv.scene.crosshairPos, 0, true)).slice(0, 3).map((v) => Math.round(v * 10) / 10 + 0);
  }

  /** Arrow keys move the crosshair one grid voxel in the picture's plane, Page Up/Down across it. */
  function onKey(entry, event) {
    const nv = entry.nv;
    if (entry.disposed || nv.volumes.length === 0 || event.altKey || event.ctrlKey || event.metaKey) return;
    const inPlane = { axial: [0, 1, 2], coronal: [0, 2, 1], sagittal: [1, 2, 0] }[entry.view] || [0, 1, 2];
    const moves = { ArrowRight: [0, 1], ArrowLeft: [0, -1], ArrowUp: [1, 1], ArrowDown: [1, -1],
                    PageUp: [2, 1], PageDown: [2, -1] };
    const move = moves[event.key];
    if (!move) return;
    event.preventDefault();
    event.stopPropagation();
    // From the centre of the grid voxel under the crosshair (centres sit at even mm on the 2 mm grid).
    const mm = currentMM(nv).map((v) => Math.round(v / VOXEL_MM) * VOXEL_MM);
    mm[inPlane[move[0]]] += move[1] * VOXEL_MM;
    moveCrosshairToMM(nv, mm);
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
  function syncWhenMounted(viewerId, layers, view, extra) {
    const waiting = waitingForCanvas.get(viewerId);
    waitingForCanvas.set(viewerId, { layers, view, extra, since: waiting ? waiting.since : performance.now() });
    if (!waiting) trySync(viewerId);
  }

  function trySync(viewerId) {
    const wanted = waitingForCanvas.get(viewerId);
    const entry = entryFor(viewerId, true);
    if (entry) {
      waitingForCanvas.delete(viewerId);
      entry.desired = wanted.layers;
      entry.view = wanted.view;
      Object.assign(entry, wanted.extra || {});
      const state = urlStates.get(rootOf(viewerId));
      if (state && state.goto) {
        entry.pendingGoto = state.goto;
        state.goto = null;
      }
      schedule(entry);
      scheduleUrlWrite(entry);
    } else if (canvasOf(viewerId) === null && performance.now() - wanted.since < CANVAS_WAIT_MS) {
      setTimeout(() => trySync(viewerId), 250);
    } else {
      waitingForCanvas.delete(viewerId); // NiiVue missing (reported on the root) or gave up waiting
    }
  }

  // ------------------------------------------------------------------------------------- view state in the URL

  /** viewer root -> {initial: the page's own state, goto: crosshair from the address not applied yet}. */
  const urlStates = new WeakMap();

  function formatNumber(value) {
    if (value === null || value === undefined || value === "") return "";
    const n = Number(value);
    return Number.isFinite(n) ? String(parseFloat(n.toPrecision(6))) : "";
  }

  /** One layer's visibility, thresholds, colormaps, opacity and frame: "1,2.5,2.5,warm,winter,1,0" (the values
   * in effect, so a layer whose defaults the controls wrote out explicitly encodes as before). */
  function encodeLayer(layer) {
    const threshold = layer.underlay ? layer.threshold : Math.max(0, finite(layer.threshold, 0));
    const thresholdNeg = layer.underlay ? null : Math.abs(finite(layer.threshold_negative, threshold));
    return [
      layer.visible === false ? "0" : "1",
      formatNumber(threshold),
      formatNumber(thresholdNeg),
      layer.colormap || "",
      layer.colormap_negative || NO_NEGATIVE,
      formatNumber(layer.opacity === undefined ? 1 : layer.opacity),
      String(Math.max(0, Math.round(finite(layer.frame, 0)))),
    ].join(",");
  }

  /** First sync of a viewer root: the page's own state and the crosshair asked for by the address (the layout
   * applied the other v_* parameters already, see dashboard/viewstate.py). */
  function rememberPageState(root, config) {
    const goto = Array.isArray(config.goto) && config.goto.length === 3 ? config.goto.map(Number) : null;
    urlStates.set(root, { initial: config.initial || {}, goto });
  }

  /** The v_* parameters of a viewer's current state: only what differs from the page's own state. */
  function urlParams(entry) {
    const state = urlStates.get(rootOf(entry.viewerId));
    if (!state) return null;
    const initial = state.initial;
    const params = {};
    const before = new Map((initial.layers || []).map((layer) => [layer.key, encodeLayer(layer)]));
    for (const layer of entry.desired || []) {
      const now = encodeLayer(layer);
      if (before.get(layer.key) !== now) params[URL_PREFIX + layer.key] = now;
    }
    if (entry.view !== initial.view) params[URL_PREFIX + "view"] = entry.view;
    if (entry.view === "mosaic" && entry.mosaic && entry.mosaic !== initial.mosaic) {
      params[URL_PREFIX + "mosaic"] = entry.mosaic;
    }
    if (entry.selected && entry.selected !== initial.selected) params[URL_PREFIX + "sel"] = entry.selected;
    if (entry.atlas && entry.atlas !== initial.atlas) params[URL_PREFIX + "atlas"] = entry.atlas;
    const nv = entry.nv;
    if (nv.volumes.length > 0 && entry.initialMM) {
      const mm = currentMM(nv);
      if (mm.some((v, i) => Math.abs(v - entry.initialMM[i]) > 0.05)) params[URL_PREFIX + "xyz"] = mm.join(",");
    }
    return params;
  }

  /** Replace the v_* parameters of the address (other parameters, e.g. a table's page, stay as they are). */
  function writeUrlNow(entry) {
    const params = urlParams(entry);
    if (!params || entry.disposed || !entry.canvas.isConnected) return;
    const url = new URL(window.location.href);
    const kept = [];
    for (const [name, value] of url.searchParams) {
      if (!name.startsWith(URL_PREFIX)) kept.push(`${encodeURIComponent(name)}=${encodeURIComponent(value)}`);
    }
    // Commas and the usual colormap characters stay readable; everything else is escaped.
    const own = Object.entries(params).map(([name, value]) =>
      `${encodeURIComponent(name)}=${encodeURIComponent(value).replace(/%2C/g, ",")}`);
    const search = kept.concat(own).join("&");
    const href = url.origin + url.pathname + (search ? "?" + search : "") + url.hash;
    if (href !== window.location.href) window.history.replaceState(window.history.state, "", href);
  }

  function scheduleUrlWrite(entry) {
    if (entry.urlTimer) return;
    entry.urlTimer = setTimeout(() => {
      entry.urlTimer = null;
      writeUrlNow(entry);
    }, URL_WRITE_MS);
  }

  // ---------------------------------------------------------------------------------------------- colorbar

  function colorbarCanvasOf(viewerId) {
    return document.getElementById(viewerId + "-colorbar");
  }

  /** The layer the settings panel shows, or the top layer. */
  function selectedLayer(entry) {
    const layers = entry.desired || [];
    return layers.find((layer) => layer.key === entry.selected) || layers[layers.length - 1] || null;
  }

  function lutOf(nv, name) {
    try {
      return nv.colormap(name || "gray");
    } catch (err) {
      return null;
    }
  }

  /**
   * The selected layer's colorbar on a 2D canvas of `width` x `height` device pixels: the negative range on the
   * left (strongest at the far left), the positive range on the right, the thresholds marked where each range
   * starts. Returns the canvas, or null while the layer is not loaded.
   */
  function renderColorbar(entry, target, width, height) {
    const layer = selectedLayer(entry);
    const vol = layer && entry.volumes.get(layer.key);
    if (!vol || !target) return null;
    const nv = entry.nv;
    target.width = width;
    target.height = height;
    const ctx = target.getContext("2d");
    const scale = height / 44;
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, width, height);
    const negative = !layer.underlay && layer.colormap_negative && Number.isFinite(vol.cal_minNeg);
    const pad = 10 * scale;
    const barTop = 6 * scale;
    const barHeight = 14 * scale;
    const gap = negative ? 28 * scale : 0;
    const span = width - 2 * pad - gap;
    const segments = [];
    if (negative) {
      segments.push({ lut: lutOf(nv, layer.colormap_negative), x: pad, w: span / 2, reverse: true,
                      labels: [formatValue(vol.cal_maxNeg), formatValue(vol.cal_minNeg)] });
    }
    const posX = negative ? pad + span / 2 + gap : pad;
    segments.push({ lut: lutOf(nv, layer.colormap), x: posX, w: negative ? span / 2 : span, reverse: false,
                    labels: [formatValue(vol.cal_min), formatValue(vol.cal_max)] });
    ctx.font = `${Math.round(11 * scale)}px sans-serif`;
    ctx.textBaseline = "top";
    for (const seg of segments) {
      if (!seg.lut) continue;
      for (let px = 0; px < seg.w; px++) {
        let index = Math.round((px / Math.max(1, seg.w - 1)) * 255);
        if (seg.reverse) index = 255 - index;
        const i = index * 4;
        ctx.fillStyle = `rgb(${seg.lut[i]},${seg.lut[i + 1]},${seg.lut[i + 2]})`;
        ctx.fillRect(seg.x + px, barTop, 1.5, barHeight);
      }
      ctx.strokeStyle = "#fff";
      ctx.lineWidth = Math.max(1, scale);
      const thresholdX = seg.reverse ? seg.x + seg.w : seg.x; // where the range starts: the threshold
      ctx.beginPath();
      ctx.moveTo(thresholdX, barTop - 3 * scale);
      ctx.lineTo(thresholdX, barTop + barHeight + 3 * scale);
      ctx.stroke();
      ctx.fillStyle = "#fff";
      const labelY = barTop + barHeight + 4 * scale;
      ctx.textAlign = "left";
      ctx.fillText(seg.labels[0], seg.x, labelY);
      ctx.textAlign = "right";
      ctx.fillText(seg.labels[1], seg.x + seg.w, labelY);
    }
    target.dataset.layer = layer.key;
    target.dataset.range = segments.map((seg) => seg.labels.join(" to ")).join("; ");
    return target;
  }

  function drawColorbar(entry) {
    const target = colorbarCanvasOf(entry.viewerId);
    if (!target || entry.disposed) return;
    const ratio = window.devicePixelRatio || 1;
    renderColorbar(entry, target, Math.max(1, Math.round(target.clientWidth * ratio)),
                   Math.max(1, Math.round((target.clientHeight || 44) * ratio)));
  }

  // ------------------------------------------------------------------------------------------- save image

  function fileNameOf(name) {
    const base = String(name || "map").normalize("NFKD").replace(/[^\w.-]+/g, "-").replace(/^-+|-+$/g, "");
    return (base || "map").slice(0, 120) + ".png";
  }

  /** The view as the canvas shows it (device pixels), with the map's name and colorbar drawn onto it. */
  function snapshotCanvas(entry) {
    const nv = entry.nv;
    const source = entry.canvas;
    nv.drawScene(); // the WebGL buffer is only valid in the task that drew it, so copy it right away
    const out = document.createElement("canvas");
    out.width = source.width;
    out.height = source.height;
    const ctx = out.getContext("2d");
    ctx.drawImage(source, 0, 0);
    const layer = selectedLayer(entry);
    const ratio = window.devicePixelRatio || 1;
    const barWidth = Math.round(Math.min(out.width * 0.45, 420 * ratio));
    const barHeight = Math.round(44 * ratio);
    const bar = renderColorbar(entry, document.createElement("canvas"), barWidth, barHeight);
    if (bar) ctx.drawImage(bar, out.width - barWidth - 8 * ratio, out.height - barHeight - 8 * ratio);
    if (layer) {
      ctx.font = `${Math.round(13 * ratio)}px sans-serif`;
      ctx.fillStyle = "#fff";
      ctx.textBaseline = "top";
      ctx.fillText(layer.name || layer.key, 8 * ratio, 6 * ratio);
    }
    return out;
  }

  function saveImage(entry) {
    const layer = selectedLayer(entry);
    const out = snapshotCanvas(entry);
    out.toBlob((blob) => {
      if (!blob) return;
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = fileNameOf(layer && layer.name);
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    }, "image/png");
  }

  // ------------------------------------------------------------------------------------- region at crosshair

  const regionRequests = new Map(); // viewer id -> number of the latest request (older answers are dropped)

  function regionChildren(answer, atlas, config, mm) {
    const source = (config.atlases || {})[atlas] || { name: atlas };
    const entry = (answer.labels || []).find((item) => item.atlas === atlas) || { label: null };
    const text = entry.label
      ? entry.label.replace(/_/g, " ") +
        (entry.probability !== null && entry.probability !== undefined
          ? ` (${Math.round(entry.probability * 100)}%)` : "")
      : "no region";
    const children = [
      h("Span", { className: "incdb-readout-label" }, "Region"),
      h("Span", { className: "incdb-region-label", "data-label": entry.label || "", "data-mm": mm.join(","),
                  "data-atlas": atlas, title: entry.label || "" }, text),
      h("Span", { className: "incdb-region-source", title: source.citation ? "Cite: " + source.citation : "" }, [
        ` · ${source.name}`,
        source.license_url
          ? h("A", { href: source.license_url, target: "_blank", rel: "noopener noreferrer",
                     className: "incdb-region-license" }, ` (${source.license || "license"})`)
          : "",
      ]),
    ];
    return children;
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
    /** layers store, view, mosaic, selection or atlas -> NiiVue (and the address). */
    sync(layers, view, mosaic, selected, atlas, config) {
      layers = Array.isArray(layers) ? layers : [];
      view = typeof view === "string" && view ? view : "multiplanar";
      const root = rootOf(config.id);
      if (root && !urlStates.has(root)) rememberPageState(root, config);
      syncWhenMounted(config.id, layers, view, { mosaic, selected, atlas });
      return noUpdate();
    },

    showMosaicInput(view) {
      return view === "mosaic" ? {} : { display: "none" };
    },

    /** location or atlas -> the region line under the readout (asked from the atlas API). */
    lookupRegion(location, atlas, config) {
      if (!config || !config.atlasUrl || !location || !Array.isArray(location.mm)) return noUpdate();
      const id = config.id;
      const asked = JSON.stringify([location.mm, atlas]);
      const root = rootOf(id);
      // Thresholds and visibility re-announce the same location: ask only when the point or the atlas changed.
      if (root && root.dataset.regionAsked === asked) return noUpdate();
      if (root) root.dataset.regionAsked = asked;
      const number = (regionRequests.get(id) || 0) + 1;
      regionRequests.set(id, number);
      const [x, y, z] = location.mm;
      const query = new URLSearchParams({ x: String(x), y: String(y), z: String(z), atlas: atlas || "" });
      fetch(`${config.atlasUrl}?${query}`, { credentials: "same-origin" })
        .then((response) => (response.ok ? response.json() : Promise.reject(new Error(String(response.status)))))
        .then((answer) => {
          if (regionRequests.get(id) !== number) return;
          setProps(pid("region", id), { children: regionChildren(answer, atlas, config, location.mm) });
        })
        .catch(() => {
          if (regionRequests.get(id) === number) setProps(pid("region", id), { children: "" });
        });
      return noUpdate();
    },

    /** "Copy link" and "Save image". */
    share(copyClicks, saveClicks, config) {
      const ctx = window.dash_clientside.callback_context;
      const fired = (ctx.triggered || []).find((t) => t.value);
      const entry = config && entryFor(config.id, false);
      if (!fired || !entry || entry.disposed) return noUpdate();
      const status = (text) => setProps(pid("share-status", config.id), { children: text });
      if (fired.prop_id.includes("save-image")) {
        saveImage(entry);
        status("Image saved");
        return noUpdate();
      }
      writeUrlNow(entry);
      const href = window.location.href;
      const root = rootOf(config.id);
      if (root) root.dataset.link = href;
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(href).then(() => status("Link copied"), () => status("Copy the address bar"));
      } else {
        status("Copy the address bar");
      }
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
    /** The view with its colorbar as a PNG data URL (what "Save image" downloads). */
    snapshot(rootId) {
      const entry = entryFor(rootId, false);
      return entry ? snapshotCanvas(entry).toDataURL("image/png") : null;
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
