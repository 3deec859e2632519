/*
 * The page's "ready" marker: document.body.dataset.ready = "1" once what a person came for is drawn, that is the
 * page content is in, no Dash callback is loading (outside lazy sections), every brain viewer has loaded its maps
 * (data-loaded="true" on .incdb-viewer) and every Plotly graph has drawn. bench/pages.py measures the time to it; it is cleared when the
 * address changes, so a navigation inside the app starts a new wait.
 */
(function () {
  "use strict";
  let shown = location.pathname + location.search;

  function ready() {
    const content = document.getElementById("_pages_content");
    if (!content || !content.children.length) return false;
    // A lazy section (assets/incdb-lazy.js) loads after the page is ready: it does not hold the marker back.
    for (const loading of document.querySelectorAll('[data-dash-is-loading="true"]')) {
      if (!loading.closest(".incdb-lazy")) return false;
    }
    for (const viewer of document.querySelectorAll(".incdb-viewer")) {
      if (viewer.dataset.loaded !== "true") return false;
    }
    for (const graph of document.querySelectorAll(".dash-graph")) {
      if (graph.offsetParent !== null && !graph.querySelector(".main-svg")) return false;
    }
    return true;
  }

  setInterval(function () {
    const here = location.pathname + location.search;
    if (here !== shown) {
      shown = here;
      delete document.body.dataset.ready;
    }
    if (document.body && document.body.dataset.ready !== "1" && ready()) document.body.dataset.ready = "1";
  }, 50);
})();
