//! The HTTP error type, extractors and fallbacks shared by the delivery server and the
//! archiver, so both answer every failure with the same `{code, message}` JSON body and the
//! same list of codes ([`vellum_wire::codes`]).
//!
//! A crate of its own rather than a module of `vellum-wire`: clients use the wire types
//! without axum, and the conversions from the server's store and MLS errors must live beside
//! the type (Rust's orphan rule), behind the `store` and `mls` features.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
pub use vellum_wire::codes;

/// The one error type of the HTTP APIs: a status and a `{code, message}` body.
/// Messages name what was wrong with the request, never its content.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, codes::UNAUTHENTICATED, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, codes::FORBIDDEN, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, message)
    }

    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::TOO_LARGE,
            "request body too large",
        )
    }

    pub fn timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            codes::TIMEOUT,
            "the request took too long",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL,
            "internal error",
        )
    }

    /// The error for a bare status that some layer produced without a body of ours.
    pub fn from_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::not_found("no such route"),
            StatusCode::METHOD_NOT_ALLOWED => Self::new(
                status,
                codes::METHOD_NOT_ALLOWED,
                "this route does not take that method",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => Self::too_large(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::new(
                status,
                codes::UNSUPPORTED_MEDIA_TYPE,
                "the body must be JSON (Content-Type: application/json)",
            ),
            StatusCode::REQUEST_TIMEOUT => Self::timeout(),
            StatusCode::SERVICE_UNAVAILABLE => Self::new(
                status,
                codes::UNAVAILABLE,
                "the server is busy; retry later",
            ),
            s if s.is_server_error() => Self::new(s, codes::INTERNAL, "internal error"),
            s => Self::new(
                s,
                codes::BAD_REQUEST,
                s.canonical_reason().unwrap_or("bad request"),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = vellum_wire::ApiError {
            code: self.code.to_string(),
            message: self.message,
        };
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
        // A body that stopped arriving (the body timeout) is not the client's bad syntax.
        if let JsonRejection::BytesRejection(BytesRejection::FailedToBufferBody(
            FailedToBufferBody::UnknownBodyError(_),
        )) = rejection
        {
            return Self::timeout();
        }
        match rejection.status() {
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
                Self::bad_request(rejection.body_text())
            }
            status => Self::from_status(status),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

/// `axum::Json`, whose rejection is an [`ApiError`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Self(value))
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Path`, whose rejection is an [`ApiError`].
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// `axum::extract::Query`, whose rejection is an [`ApiError`].
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// The router's fallback: unknown routes are a JSON 404.
pub async fn not_found() -> ApiError {
    ApiError::from_status(StatusCode::NOT_FOUND)
}

/// The router's `method_not_allowed_fallback`: a JSON 405.
pub async fn method_not_allowed() -> ApiError {
    ApiError::from_status(StatusCode::METHOD_NOT_ALLOWED)
}

/// Middleware for the outside of a router: an error that a layer answered with a bare status
/// or plain text (a body limit's 413, a timeout's 408) gets the `{code, message}` body.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        return ApiError::from_status(status).into_response();
    }
    response
}

#[cfg(feature = "store")]
impl From<vellum_store::Error> for ApiError {
    fn from(e: vellum_store::Error) -> Self {
        use vellum_store::Error as E;
        match e {
            E::Conflict(what) => Self::new(
                StatusCode::CONFLICT,
                codes::CONFLICT,
                format!("{what} already exists"),
            ),
            E::NotFound(what) => Self::not_found(format!("{what} not found")),
            E::InvalidCode => Self::new(StatusCode::FORBIDDEN, codes::INVALID_CODE, e.to_string()),
            E::StaleEpoch { current } => Self::new(
                StatusCode::CONFLICT,
                codes::STALE_EPOCH,
                format!("the group has moved on to epoch {current}; sync and retry"),
            ),
            E::StaleState { epoch } => Self::new(
                StatusCode::CONFLICT,
                codes::STALE_EPOCH,
                format!(
                    "the group's state changed at epoch {epoch} (a member left); sync and retry"
                ),
            ),
            E::NotMember => Self::new(StatusCode::FORBIDDEN, codes::NOT_MEMBER, e.to_string()),
            E::Forbidden(message) => Self::forbidden(message),
            E::Refused(message) => Self::new(StatusCode::CONFLICT, codes::CONFLICT, message),
            E::InvalidText(message) => Self::bad_request(message),
            E::DiskFull => {
                tracing::error!("the disk is full: refusing writes");
                Self::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    codes::INSUFFICIENT_STORAGE,
                    "the server's disk is full; reads still work, writes will after space is freed",
                )
            }
            E::QuotaExceeded { .. } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                codes::QUOTA_EXCEEDED,
                e.to_string(),
            ),
            E::Backend(detail) => {
                tracing::error!(%detail, "storage failure");
                Self::internal()
            }
            E::Schema(detail) => {
                tracing::error!(%detail, "storage failure");
                Self::internal()
            }
        }
    }
}

#[cfg(feature = "mls")]
impl From<vellum_mls::Error> for ApiError {
    fn from(e: vellum_mls::Error) -> Self {
        use vellum_mls::Error as E;
        match e {
            E::Malformed(_) => {
                Self::new(StatusCode::BAD_REQUEST, codes::MALFORMED_MLS, e.to_string())
            }
            E::WrongEpoch { current, .. } => Self::new(
                StatusCode::CONFLICT,
                codes::STALE_EPOCH,
                format!("the group has moved on to epoch {current}; sync and retry"),
            ),
            E::SenderMismatch { .. } => Self::forbidden(e.to_string()),
            E::Unauthorized(_) => {
                Self::new(StatusCode::FORBIDDEN, codes::NOT_CHAT_ADMIN, e.to_string())
            }
            _ => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                codes::INVALID_MLS,
                e.to_string(),
            ),
        }
    }
}

#[cfg(feature = "mls")]
impl From<vellum_mls::PolicyViolation> for ApiError {
    fn from(e: vellum_mls::PolicyViolation) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            codes::POLICY_VIOLATION,
            e.0,
        )
    }
}

/// The headers every answer of a page served to a browser carries (the records console, the
/// messenger window): its Content-Security-Policy, nothing kept in a cache, no sniffing, no
/// referrer, no framing.
pub fn page_security_headers(headers: &mut axum::http::HeaderMap, csp: &'static str) {
    use axum::http::{header, HeaderValue};
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// SIGINT or SIGTERM: when a service (the delivery server, the messenger window) stops
/// accepting and finishes what is in flight.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_statuses_get_stable_codes() {
        for (status, code) in [
            (StatusCode::NOT_FOUND, codes::NOT_FOUND),
            (StatusCode::METHOD_NOT_ALLOWED, codes::METHOD_NOT_ALLOWED),
            (StatusCode::PAYLOAD_TOO_LARGE, codes::TOO_LARGE),
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                codes::UNSUPPORTED_MEDIA_TYPE,
            ),
            (StatusCode::REQUEST_TIMEOUT, codes::TIMEOUT),
            (StatusCode::BAD_GATEWAY, codes::INTERNAL),
        ] {
            let e = ApiError::from_status(status);
            assert_eq!((e.status, e.code), (status, code));
        }
    }

    #[cfg(feature = "store")]
    #[test]
    fn a_full_disk_is_507_insufficient_storage_and_other_failures_hide_details() {
        let full = ApiError::from(vellum_store::Error::DiskFull);
        assert_eq!(
            (full.status, full.code),
            (
                StatusCode::INSUFFICIENT_STORAGE,
                codes::INSUFFICIENT_STORAGE
            )
        );
        let broken = ApiError::from(vellum_store::Error::Backend("/secret/path".into()));
        assert_eq!(broken.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!broken.message.contains("secret"));
    }

    /// What the archiver's handlers do (`Result<axum::Json<T>, JsonRejection>` then `?`)
    /// and what `Json` does must give the same codes as the server's errors.
    #[tokio::test]
    async fn issue_7_body_rejections_keep_their_status_and_code() {
        use axum::body::Body;
        use axum::extract::rejection::JsonRejection;
        use axum::http::Request;
        use tower::ServiceExt;

        async fn raw(
            body: Result<axum::Json<serde_json::Value>, JsonRejection>,
        ) -> Result<&'static str, ApiError> {
            let axum::Json(_) = body?;
            Ok("ok")
        }
        async fn wrapped(Json(_): Json<serde_json::Value>) -> &'static str {
            "ok"
        }
        let app = axum::Router::new()
            .route("/raw", axum::routing::post(raw))
            .route("/wrapped", axum::routing::post(wrapped))
            .layer(axum::extract::DefaultBodyLimit::max(64));
        for path in ["/raw", "/wrapped"] {
            for (content_type, body, status, code) in [
                (
                    "text/plain",
                    "{}".to_string(),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    codes::UNSUPPORTED_MEDIA_TYPE,
                ),
                (
                    "application/json",
                    format!("[{}]", "1,".repeat(100) + "1"),
                    StatusCode::PAYLOAD_TOO_LARGE,
                    codes::TOO_LARGE,
                ),
                (
                    "application/json",
                    "{".to_string(),
                    StatusCode::BAD_REQUEST,
                    codes::BAD_REQUEST,
                ),
            ] {
                let request = Request::post(path)
                    .header("content-type", content_type)
                    .body(Body::from(body))
                    .unwrap();
                let response = app.clone().oneshot(request).await.unwrap();
                assert_eq!(response.status(), status, "{path} {content_type}");
                let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .unwrap();
                let error: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(error["code"], code, "{path}: {error}");
            }
        }
    }
}
