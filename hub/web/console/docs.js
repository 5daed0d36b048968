// Swagger UI over the hub's own /openapi.json, from files the hub serves itself (no CDN).
"use strict";
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui" });
