// Fills in the browser's IANA time zone on a fresh signup form. The field stays editable, and the
// form works the same without this script (the server defaults to UTC).
(function () {
  "use strict";
  var field = document.getElementById("time_zone");
  if (!field || !field.hasAttribute("data-detect")) {
    return;
  }
  try {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (typeof zone === "string" && /^[A-Za-z0-9_+\-\/]{1,64}$/.test(zone)) {
      field.value = zone;
    }
  } catch (error) {
    // An old browser: keep UTC.
  }
})();
