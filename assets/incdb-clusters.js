/*
 * Cluster tables (dashboard/components/clusters.py): once the section has come into view, the viewer's selected map
 * layer, its thresholds and the chosen atlas go to the panel's settings store a moment after the last change (a
 * slider drag would otherwise ask the server for a table at every step), and a click on a row (or Enter) moves the
 * viewer's crosshair to its peak.
 */
(function () {
  "use strict";

  const SETTINGS_ID = { type: "incdb-clusters-settings", panel: "clusters" };
  const DEBOUNCE_MS = 350;
  let timer = null;

  function mapLayer(layers, selected) {
    const maps = (Array.isArray(layers) ? layers : []).filter((layer) => layer && !layer.underlay);
    const chosen = maps.find((layer) => layer.key === selected);
    if (chosen) return chosen;
    const shown = maps.filter((layer) => layer.visible !== false);
    return shown[shown.length - 1] || maps[maps.length - 1] || null;
  }

  function number(value) {
    const n = Number(value);
    return value === null || value === undefined || !Number.isFinite(n) ? null : n;
  }

  window.dash_clientside = window.dash_clientside || {};
  window.dash_clientside.incdbClusters = {
    settings(layers, selected, atlas, shown, current) {
      if (shown !== true) return window.dash_clientside.no_update; // not in view yet (assets/incdb-lazy.js)
      const layer = mapLayer(layers, selected);
      if (!layer) return window.dash_clientside.no_update;
      // The layer store may hold the negative threshold as null ("same as the positive one") until the viewer's
      // settings panel writes it back as a number once the map has loaded: both mean the same table, so they are
      // normalised here and the table is not asked for twice on load.
      const threshold = number(layer.threshold);
      const negative = number(layer.threshold_negative);
      const next = {
        layer: layer.key,
        threshold,
        threshold_negative: negative === null ? threshold : Math.abs(negative),
        atlas: typeof atlas === "string" ? atlas : null,
      };
      if (JSON.stringify(next) === JSON.stringify(current)) return window.dash_clientside.no_update;
      if (timer !== null) clearTimeout(timer);
      if (!current || !current.layer) {
        timer = null;
        return next; // the first table of the page at once
      }
      timer = setTimeout(() => {
        timer = null;
        window.dash_clientside.set_props(SETTINGS_ID, { data: next });
      }, DEBOUNCE_MS);
      return window.dash_clientside.no_update;
    },
  };

  function goToPeak(row) {
    const box = row.closest("[data-viewer]");
    const mm = (row.dataset.mm || "").split(",").map(Number);
    if (!box || mm.length !== 3 || !mm.every(Number.isFinite) || !window.incdbViewer) return;
    window.incdbViewer.goto(box.dataset.viewer, mm);
    for (const other of box.querySelectorAll(".incdb-cluster-row.table-active")) other.classList.remove("table-active");
    row.classList.add("table-active");
  }

  document.addEventListener("click", (event) => {
    const row = event.target instanceof Element && event.target.closest(".incdb-cluster-row");
    if (row) goToPeak(row);
  });
  document.addEventListener("keydown", (event) => {
    const row = event.key === "Enter" && event.target instanceof Element && event.target.closest(".incdb-cluster-row");
    if (row) goToPeak(row);
  });
})();
