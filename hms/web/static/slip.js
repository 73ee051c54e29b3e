// The token slip's Print button (a static file: the CSP allows no inline script).
(function () {
  "use strict";
  var button = document.getElementById("print-now");
  if (button) button.addEventListener("click", function () { window.print(); });
})();
