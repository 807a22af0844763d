// Fills in the browser's IANA time zone on a fresh signup form, and chooses the locale of the region
// that zone lies in (Asia/Kolkata: en-IN) when the page names one. Both fields stay editable, and
// the form works the same without this script: the server then writes UTC, and chooses the locale
// from the browser's Accept-Language.
(function () {
  "use strict";
  var field = document.getElementById("time_zone");
  if (!field || !field.hasAttribute("data-detect")) {
    return;
  }
  var zone;
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (error) {
    return; // An old browser: keep UTC.
  }
  if (typeof zone !== "string" || !/^[A-Za-z0-9_+\-\/]{1,64}$/.test(zone)) {
    return;
  }
  field.value = zone;
  var locale = document.getElementById("locale");
  if (!locale || !locale.hasAttribute("data-detect")) {
    return;
  }
  for (var i = 0; i < locale.options.length; i += 1) {
    var zones = (locale.options[i].getAttribute("data-zones") || "").split(" ");
    if (zones.indexOf(zone) !== -1) {
      locale.value = locale.options[i].value;
      return;
    }
  }
})();
