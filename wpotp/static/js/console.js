/* wpotp console behaviour: small, no inline handlers (the CSP forbids them). */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  // Phone navigation: the Menu button folds the nav open and closed.
  function setupNav() {
    var toggle = document.querySelector(".nav-toggle");
    var bar = document.querySelector(".topbar");
    if (!toggle || !bar) return;
    toggle.addEventListener("click", function () {
      var open = bar.classList.toggle("nav-open");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }

  // <form data-confirm="..."> asks before it submits (revoke, delete...).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  }, true);

  // <select data-autosubmit> submits its form when changed (the app switcher).
  document.addEventListener("change", function (event) {
    var el = event.target;
    if (el.hasAttribute && el.hasAttribute("data-autosubmit") && el.form) {
      el.form.requestSubmit ? el.form.requestSubmit() : el.form.submit();
    }
  });

  // <button data-copy="#selector"> copies that element's text.
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      // The Clipboard API refuses when the document is not focused (another tab or window in
      // front): the older way may still work then.
      return navigator.clipboard.writeText(text).catch(function () { return copyTheOldWay(text); });
    }
    return copyTheOldWay(text);
  }

  function copyTheOldWay(text) {
    return new Promise(function (resolve, reject) {  // plain http on a LAN: the older way
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "offscreen";
      document.body.appendChild(area);
      area.select();
      var ok = document.execCommand("copy");
      document.body.removeChild(area);
      ok ? resolve() : reject(new Error("copy refused"));
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-copy]") : null;
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source) return;
    var label = button.textContent;
    copyText(source.textContent.trim()).then(function () {
      button.textContent = button.getAttribute("data-copied") || "Copied";
      button.classList.add("copied");
    }, function () {
      button.textContent = button.getAttribute("data-copy-failed") || "Select and copy it by hand";
    });
    window.setTimeout(function () { button.textContent = label; button.classList.remove("copied"); }, 2500);
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setupNav);
  } else {
    setupNav();
  }
})();
