/* The SMS texts on the templates page: a live GSM-7 / UCS-2 segment count under each text, the
   same count the server makes (wpotp/otp/sms_text.py segments()), with a sample code. */
(function () {
  "use strict";
  var BASIC = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
  var EXTENSION = "^{}\\[~]|€\f";

  function segments(text) {
    var units = 0, gsm = true, i, ch;
    for (i = 0; i < text.length; i++) {
      ch = text.charAt(i);
      if (BASIC.indexOf(ch) >= 0) { units += 1; }
      else if (EXTENSION.indexOf(ch) >= 0) { units += 2; }
      else { gsm = false; break; }
    }
    if (gsm) { return ["GSM-7", units <= 160 ? 1 : Math.ceil(units / 153)]; }
    units = text.length; // UTF-16 code units, as the server counts them
    return ["UCS-2", units <= 70 ? 1 : Math.ceil(units / 67)];
  }

  function sample(text, area) {
    var code = new Array(parseInt(area.getAttribute("data-code-length") || "6", 10) + 1).join("8");
    return text.split("{app}").join(area.getAttribute("data-app") || "").split("{code}").join(code);
  }

  function update(area) {
    var out = document.getElementById(area.getAttribute("data-sms-count"));
    if (!out) { return; }
    var own = area.value.trim();
    var text = own || area.getAttribute("data-builtin") || "";
    if (!text) { out.textContent = ""; return; }
    var found = segments(sample(text, area));
    // The wording comes from the page (data-* of .sms-texts), in the console's language.
    var words = area.closest(".sms-texts") || document.body;
    var word = function (name, fallback) { return words.getAttribute(name) || fallback; };
    var count = word(found[1] === 1 ? "data-one-segment" : "data-many-segments",
                     found[1] === 1 ? "{n} segment" : "{n} segments").split("{n}").join(String(found[1]));
    var note = own ? (own.split("{code}").length === 2 ? "" : " · " + word("data-needs-code", "needs {code} once"))
      : " " + word("data-builtin-note", "(built-in text)");
    out.textContent = found[0] + " · " + count + note;
  }

  function setup() {
    var areas = document.querySelectorAll("textarea[data-sms-count]");
    Array.prototype.forEach.call(areas, function (area) {
      area.addEventListener("input", function () { update(area); });
      update(area);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setup);
  } else {
    setup();
  }
})();
