/*
 * Lazy sections (dashboard/components/lazy.py): an element with the class "incdb-lazy" names, in its data-lazy
 * attribute, the id of a dcc.Store that its section's callback waits for. Once the element is in the
 * viewport, this sets that store to true, once. So a page asks the server only for what is on screen, and below-the-
 * fold sections load when scrolled to.
 *
 * Header, viewer and main figure first: watching starts when every brain viewer of the page has loaded its maps
 * (data-loaded="true" on .incdb-viewer), or WAIT_MS after the section appeared if a viewer never finishes (no
 * WebGL, say). WAIT_MS is long on purpose: on a busy machine a viewer takes seconds, and a section that loads in the
 * meantime competes with it for the main thread.
 */
(function () {
  "use strict";

  const WAIT_MS = 15000;
  const MARGIN = "0px"; // in view: a section just below the fold waits for a scroll
  const POLL_MS = 100;
  const seen = new WeakMap(); // element -> time it was first found
  let observer = null;

  function viewersLoaded() {
    for (const viewer of document.querySelectorAll(".incdb-viewer")) {
      if (viewer.dataset.loaded !== "true") return false;
    }
    return true;
  }

  function show(element) {
    if (element.dataset.lazyShown === "1") return;
    let id = null;
    try {
      id = JSON.parse(element.dataset.lazy || "null");
    } catch (error) {
      id = null;
    }
    const clientside = window.dash_clientside;
    if (!id || !clientside || typeof clientside.set_props !== "function") return;
    element.dataset.lazyShown = "1";
    clientside.set_props(id, { data: true });
  }

  function watcher() {
    if (observer === null && "IntersectionObserver" in window) {
      observer = new IntersectionObserver(
        (entries) => {
          for (const entry of entries) {
            if (!entry.isIntersecting) continue;
            observer.unobserve(entry.target);
            show(entry.target);
          }
        },
        { rootMargin: MARGIN },
      );
    }
    return observer;
  }

  setInterval(function () {
    const waiting = document.querySelectorAll(".incdb-lazy[data-lazy]:not([data-lazy-watched])");
    if (!waiting.length) return;
    const now = performance.now();
    const settled = viewersLoaded();
    for (const element of waiting) {
      if (!seen.has(element)) seen.set(element, now);
      if (!settled && now - seen.get(element) < WAIT_MS) continue;
      element.dataset.lazyWatched = "1";
      const io = watcher();
      if (io) io.observe(element);
      else show(element); // no IntersectionObserver: load at once
    }
  }, POLL_MS);
})();
