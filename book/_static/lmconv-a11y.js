// Accessible names that the theme and the chart embeds leave out, found by axe-core in the browser test
// (tests/test_book.py). Charts are drawn after the page loads, so the fixes are applied again as nodes appear.
(function () {
  "use strict";
  function fix(root) {
    // vega-embed's actions menu: a <summary> holding only an icon
    root.querySelectorAll('details[title="Click to view actions"] > summary:not([aria-label])').forEach(function (s) {
      s.setAttribute("aria-label", "Chart actions: save as SVG or PNG, view the source");
    });
    // a hidden cell's toggle: its visible text ("Show code cell content") names it better than the generic label
    root.querySelectorAll('summary[aria-label="Toggle hidden content"]').forEach(function (s) {
      s.removeAttribute("aria-label");
    });
    // the colour-mode button: its icons are decoration, the button's label names it
    root.querySelectorAll(".theme-switch-button i[title]").forEach(function (i) {
      i.setAttribute("aria-hidden", "true");
      i.removeAttribute("title");
    });
    // the bibliography: a list whose entries carry doc-biblioentry, a deprecated role that is no list item
    root.querySelectorAll('[role="list"] > [role="doc-biblioentry"]').forEach(function (e) {
      e.setAttribute("role", "listitem");
    });
  }
  var pending = false;
  new MutationObserver(function () {
    if (!pending) {
      pending = true;
      window.setTimeout(function () {
        pending = false;
        fix(document);
      }, 50);
    }
  }).observe(document.documentElement, { childList: true, subtree: true });
  document.addEventListener("DOMContentLoaded", function () {
    fix(document);
  });
})();
