/* The reports page's chart: OTPs per bucket, stacked by status. The numbers come from the
   <script type="application/json" id="report-data"> block the server renders (data, not code). */
(function () {
  "use strict";

  // The lifecycle's order (the JSON block's keys arrive sorted by name).
  var ORDER = ["QUEUED", "SENT", "DELIVERED", "READ", "VERIFIED", "FAILED", "EXPIRED", "CANCELED"];
  var COLORS = {
    QUEUED: "#98a2b3", SENT: "#2e90fa", DELIVERED: "#15b79e", READ: "#6172f3",
    VERIFIED: "#12b76a", FAILED: "#f04438", EXPIRED: "#f79009", CANCELED: "#667085"
  };

  var MIN_BAR_PX = 10;  // past ~100 buckets (an hourly week) the chart scrolls sideways instead of a hairline

  function label(bucket, interval) {
    // The server names each bucket in the installation's time zone (`label`); else its UTC start:
    // "2026-05-17T12:00:00.000Z" -> "2026-05-17" by day, "05-17 12:00" by hour.
    if (bucket.label) return bucket.label;
    var start = bucket.start;
    return interval === "hour" ? start.slice(5, 10) + " " + start.slice(11, 16) : start.slice(0, 10);
  }

  function names() {
    var block = document.getElementById("report-labels");
    return block ? JSON.parse(block.textContent) : {};
  }

  function widen(canvas, count) {
    var box = canvas.parentNode;
    var scroller = box && box.parentNode;
    if (!scroller || !scroller.classList.contains("chart-scroll")) return;
    var wanted = count * MIN_BAR_PX;
    if (wanted > scroller.clientWidth) {
      box.style.width = wanted + "px";  // CSSOM, not an inline style attribute: the CSP allows it
      scroller.classList.add("scrolls");
    }
  }

  function draw() {
    var source = document.getElementById("report-data");
    var canvas = document.getElementById("report-chart");
    if (!source || !canvas || typeof window.Chart === "undefined") return;
    var report = JSON.parse(source.textContent);
    var statusNames = names();
    widen(canvas, report.buckets.length);
    var present = Object.keys(report.totals.byStatus);
    var statuses = ORDER.filter(function (s) { return present.indexOf(s) >= 0; })
      .concat(present.filter(function (s) { return ORDER.indexOf(s) < 0; }));
    var datasets = statuses.map(function (status) {
      return {
        label: statusNames[status] || status,
        data: report.buckets.map(function (b) { return b.byStatus[status] || 0; }),
        backgroundColor: COLORS[status] || "#98a2b3",
        stack: "otps"
      };
    });
    var chart = new window.Chart(canvas, {
      type: "bar",
      data: { labels: report.buckets.map(function (b) { return label(b, report.interval); }), datasets: datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { stacked: true, ticks: { autoSkip: true, maxRotation: 0 } },
          y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } }
        },
        plugins: { legend: { position: "bottom" } }
      }
    });
    canvas.setAttribute("data-ready", "true");  // lets a test (or a person with devtools) see it drew
    window.wpotpReportChart = chart;
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
