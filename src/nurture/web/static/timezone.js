// Fills in the browser's IANA time zone on a fresh signup form, and chooses a locale of the region
// that zone lies in when the page names one: the one the server chose, if it is of that region (Hindi
// asked for in India: hi-IN), else the region's first (Asia/Kolkata: en-IN). Both fields stay
// editable, and the form works the same without this script: the server then writes UTC, and
// chooses the locale from ?lang=, its cookie or the browser's Accept-Language.
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
  var inZone = function (option) {
    return (option.getAttribute("data-zones") || "").split(" ").indexOf(zone) !== -1;
  };
  if (locale.selectedIndex !== -1 && inZone(locale.options[locale.selectedIndex])) {
    return;
  }
  for (var i = 0; i < locale.options.length; i += 1) {
    if (inZone(locale.options[i])) {
      locale.value = locale.options[i].value;
      return;
    }
  }
})();
