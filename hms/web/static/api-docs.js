// /api/docs: starts the vendored Swagger UI (static/vendor/swagger-ui) on HMS's OpenAPI
// document (URL in this script tag's data-spec-url). A static file, so the docs page runs
// under script-src 'self'. validatorUrl null: Swagger UI would otherwise load a badge
// from validator.swagger.io, and the clinic's network may have no internet.
(function () {
  "use strict";
  var specUrl = document.currentScript.dataset.specUrl;
  window.ui = SwaggerUIBundle({
    url: specUrl,
    dom_id: "#swagger-ui",
    validatorUrl: null,
    deepLinking: true
  });
})();
