/*
 * Accessibility repairs for third-party components that INcDb cannot configure from Python (WCAG 2.1 AA).
 *
 * - dash-bootstrap-components Tabs render every tab with the same id, aria-controls pointing at a panel that does
 *   not exist ("...-tabpane-null") and tabindex -1, so tabs are invalid ARIA and out of the keyboard's reach. Each
 *   tab gets a unique id, aria-selected, aria-controls only for the panel that is on the page, and a roving
 *   tabindex (the active tab is in the tab order; Left/Right/Home/End move between tabs and open them, as the WAI
 *   tabs pattern says).
 * - dcc.Slider takes no aria-* props: its handle (role="slider") and its number box get the label of the nearest
 *   ``[data-incdb-label]`` wrapper (dashboard/viewer.py ``labelled_slider``).
 * - dcc.Dropdown (Dash 4) reaches the keyboard through a focusable input marked aria-hidden that forwards the
 *   focus to its button: the button itself becomes the tab stop, the hidden input leaves the tab order, and the
 *   button's name starts with the text of its ``<label for>``.
 * - The skip link moves the focus into <main> without changing the address (Dash pages would read a hash change).
 *
 * All of it is idempotent (an attribute is written only when it differs) and runs after every DOM change, since
 * React re-renders these components at any time; a MutationObserver batches the changes into one pass per frame.
 */
(function () {
  "use strict";

  function set(el, name, value) {
    if (value === null) {
      if (el.hasAttribute(name)) el.removeAttribute(name);
    } else if (el.getAttribute(name) !== String(value)) {
      el.setAttribute(name, String(value));
    }
  }

  let tablistCount = 0;

  function repairTabs(root) {
    for (const list of root.querySelectorAll('[role="tablist"]')) {
      if (!list.dataset.incdbTabs) list.dataset.incdbTabs = "t" + ++tablistCount;
      const base = "incdb-" + list.dataset.incdbTabs;
      const tabs = [...list.querySelectorAll('[role="tab"]')];
      const content = list.nextElementSibling;
      const panel = content && content.querySelector(':scope > [role="tabpanel"].active, :scope > [role="tabpanel"]:not([hidden])');
      tabs.forEach((tab, i) => {
        const active = tab.classList.contains("active");
        set(tab, "id", base + "-tab-" + i);
        set(tab, "aria-selected", active ? "true" : "false");
        set(tab, "tabindex", active ? "0" : "-1");
        if (active && panel) {
          if (!panel.id || panel.id.includes("null")) set(panel, "id", base + "-panel");
          set(tab, "aria-controls", panel.id);
          set(panel, "aria-labelledby", tab.id);
          set(panel, "tabindex", "0");
        } else {
          set(tab, "aria-controls", null);
        }
      });
      if (!tabs.some((tab) => tab.classList.contains("active")) && tabs.length) set(tabs[0], "tabindex", "0");
    }
  }

  function onTabKey(event) {
    const tab = event.target.closest && event.target.closest('[role="tab"]');
    if (!tab) return;
    const tabs = [...tab.closest('[role="tablist"]').querySelectorAll('[role="tab"]')];
    const i = tabs.indexOf(tab);
    const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[event.key];
    if (event.key === " ") { // Enter already clicks a link; Space does not
      event.preventDefault();
      tab.click();
      return;
    }
    if (next === undefined) return;
    event.preventDefault();
    const target = tabs[(next + tabs.length) % tabs.length];
    target.focus();
    target.click();
  }

  function labelSliders(root) {
    for (const box of root.querySelectorAll("[data-incdb-label]")) {
      const label = box.getAttribute("data-incdb-label");
      for (const el of box.querySelectorAll('[role="slider"], input')) set(el, "aria-label", label);
    }
  }

  function repairDropdowns(root) {
    for (const proxy of root.querySelectorAll(".dash-dropdown-focus-target")) {
      set(proxy, "tabindex", "-1");
      const button = proxy.nextElementSibling;
      if (!button || !button.classList.contains("dash-dropdown")) continue;
      set(button, "tabindex", button.disabled ? "-1" : "0");
      // The button names itself by its value only ("20"): put the page's <label for> in front of it.
      const label = button.id && document.querySelector('label[for="' + CSS.escape(button.id) + '"]');
      if (!label) continue;
      if (!label.id) label.id = button.id + "-label";
      const rest = (button.getAttribute("aria-labelledby") || "").split(" ").filter((id) => id && id !== label.id);
      set(button, "aria-labelledby", [label.id, ...rest].join(" "));
    }
  }

  function repair() {
    repairTabs(document);
    labelSliders(document);
    repairDropdowns(document);
  }

  let pending = false;
  function schedule() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      repair();
    });
  }

  function start() {
    repair();
    new MutationObserver(schedule).observe(document.body, {
      subtree: true, childList: true, attributes: true, attributeFilter: ["class", "tabindex", "id", "aria-controls", "aria-labelledby"],
    });
    document.addEventListener("keydown", onTabKey);
    document.addEventListener("click", (event) => {
      const skip = event.target.closest && event.target.closest(".incdb-skip-link");
      if (!skip) return;
      const main = document.getElementById(skip.getAttribute("href").slice(1));
      if (!main) return;
      event.preventDefault();
      main.focus();
      main.scrollIntoView();
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
