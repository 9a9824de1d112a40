/* Swagger UI for /v1/docs: a file, not an inline script, so the console's CSP holds. */
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-spec"),
    dom_id: "#swagger-ui",
    deepLinking: true,
    tryItOutEnabled: false,
    persistAuthorization: false,
    validatorUrl: null, // never ask validator.swagger.io: no request leaves this server
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
});
