// /admin: the access keys listed on each page (Alt+key; the browser's own accesskey
// handling differs between browsers and is off in some): a link is followed, a field
// is focused.
(function () {
  "use strict";
  document.addEventListener("keydown", function (event) {
    if (!event.altKey || event.ctrlKey || event.metaKey) return;
    var match = /^Key([A-Z])$/.exec(event.code);
    if (!match) return;
    var target = document.querySelector('[accesskey="' + match[1].toLowerCase() + '"]');
    if (!target) return;
    event.preventDefault();
    if (target.tagName === "A") {
      target.click();
    } else {
      target.focus();
      if (target.select && target.type !== "password") target.select();
    }
  });
  // A refused form: its first field with an error is where to look.
  var invalid = document.querySelector('[aria-invalid="true"]');
  if (invalid) invalid.focus();
})();
