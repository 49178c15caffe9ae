use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::Extension;

/// The generated OpenAPI document, as served.
#[derive(Debug, Clone)]
pub struct OpenApiDocument(pub Arc<String>);

/// Liveness: answers `ok` while the server accepts connections.
#[utoipa::path(get, path = "/healthz", tag = "meta",
    responses((status = 200, description = "The server is up", body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)))]
pub async fn openapi_json(Extension(doc): Extension<OpenApiDocument>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.as_str().to_owned(),
    )
}
