// Tollgate's small progressive enhancements. Every page works without this file.
(function () {
  "use strict";

  function announce(message) {
    var live = document.getElementById("live");
    if (!live) return;
    live.textContent = message;
    live.hidden = false;
    clearTimeout(announce.timer);
    announce.timer = setTimeout(function () { live.hidden = true; }, 4000);
  }

  function textOf(el) {
    return "value" in el && el.tagName !== "PRE" ? el.value : el.textContent;
  }

  function copyFrom(button) {
    var el = document.getElementById(button.dataset.copy);
    if (!el) return;
    var text = textOf(el);
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      announce("Copied to the clipboard.");
      setTimeout(function () { button.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { selectText(el); });
    } else {
      selectText(el);
      announce("Press Ctrl+C (⌘C) to copy.");
    }
  }

  function selectText(el) {
    if (el.select) { el.focus(); el.select(); return; }
    var range = document.createRange();
    range.selectNodeContents(el);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }

  // Copy buttons need JavaScript, so they start hidden.
  function enhance(root) {
    root.querySelectorAll("[data-copy]").forEach(function (b) { b.hidden = false; });
    var focus = root.querySelector ? root.querySelector("[data-focus]") : null;
    if (focus && root !== document) focus.focus();
  }

  document.addEventListener("click", function (e) {
    var b = e.target.closest("[data-copy]");
    if (b) copyFrom(b);
  });

  document.addEventListener("DOMContentLoaded", function () { enhance(document); });
  document.addEventListener("htmx:load", function (e) { enhance(e.target); });
  document.addEventListener("htmx:responseError", function () {
    announce("Something went wrong. Reload the page and try again.");
  });
  document.addEventListener("htmx:sendError", function () {
    announce("Could not reach Tollgate. Check your connection and try again.");
  });
})();
