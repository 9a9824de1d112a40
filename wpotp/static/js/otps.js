/* The live OTP log and the attempts list: a click anywhere on a row opens what the row links to.
   The polling itself is htmx's (hx-trigger="every 2s" on the log's tbody): no code here. */
(function () {
  "use strict";

  document.addEventListener("click", function (event) {
    if (event.defaultPrevented || event.button !== 0) return;
    var target = event.target;
    if (!target.closest) return;
    // A real link or control in the row keeps its own behaviour (and middle/ctrl-click on links).
    if (target.closest("a, button, input, select, textarea, label")) return;
    var row = target.closest("tr[data-href]");
    if (!row) return;
    if (window.getSelection && String(window.getSelection()).length > 0) return;  // selecting text
    if (event.ctrlKey || event.metaKey || event.shiftKey) {
      window.open(row.getAttribute("data-href"), "_blank", "noopener");
      return;
    }
    window.location.assign(row.getAttribute("data-href"));
  });
})();
