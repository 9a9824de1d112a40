/* The live OTP log and the attempts list: a click anywhere on a row opens what the row links to.
   The polling itself is htmx's (hx-trigger="every 2s" on the log's tbody). Each poll also names
   the rows shown that may still change (`shown`: id:status:attempts, newest first): the server
   answers those that moved, and htmx swaps each into its place (out of band). */
(function () {
  "use strict";

  var FINAL = ["VERIFIED", "FAILED", "EXPIRED", "CANCELED"];
  var MAX_WATCHED = 200;  // the server reads at most this many (otps.py WATCH_LIMIT)

  function watchedRows(tbody) {
    var out = [];
    var rows = tbody.querySelectorAll("tr[data-state]");
    for (var i = 0; i < rows.length && out.length < MAX_WATCHED; i++) {
      var state = rows[i].getAttribute("data-state");
      if (FINAL.indexOf(state.split(":")[0]) >= 0) continue;
      out.push(rows[i].id.replace(/^row-/, "") + ":" + state);
    }
    return out.join(",");
  }

  document.addEventListener("htmx:configRequest", function (event) {
    var source = event.detail.elt;
    if (!source || source.id !== "otp-rows") return;
    event.detail.parameters.shown = watchedRows(source);
  });

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
