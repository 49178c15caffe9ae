use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use vellum_wire::{codes, ApiError as Body};

/// The one error type of the HTTP API: a status and a `{code, message}` body.
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

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL,
            "internal error",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            code: self.code.to_string(),
            message: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<vellum_store::Error> for ApiError {
    fn from(e: vellum_store::Error) -> Self {
        use vellum_store::Error as E;
        match e {
            E::Conflict(what) => Self::new(
                StatusCode::CONFLICT,
                codes::CONFLICT,
                format!("{what} already exists"),
            ),
            E::NotFound(what) => Self::new(
                StatusCode::NOT_FOUND,
                codes::NOT_FOUND,
                format!("{what} not found"),
            ),
            E::InvalidCode => Self::new(StatusCode::FORBIDDEN, codes::INVALID_CODE, e.to_string()),
            E::StaleEpoch { current } => Self::new(
                StatusCode::CONFLICT,
                codes::STALE_EPOCH,
                format!("the group has moved on to epoch {current}; sync and retry"),
            ),
            E::NotMember => Self::new(StatusCode::FORBIDDEN, codes::NOT_MEMBER, e.to_string()),
            E::Forbidden(message) => Self::new(StatusCode::FORBIDDEN, codes::FORBIDDEN, message),
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
            E::SenderMismatch { .. } => {
                Self::new(StatusCode::FORBIDDEN, codes::FORBIDDEN, e.to_string())
            }
            _ => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                codes::INVALID_MLS,
                e.to_string(),
            ),
        }
    }
}

/// JSON bodies that fail to parse get our error shape, not axum's plain text.
impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                codes::TOO_LARGE,
                "request body too large",
            );
        }
        Self::bad_request(rejection.body_text())
    }
}

impl From<vellum_mls::PolicyViolation> for ApiError {
    fn from(e: vellum_mls::PolicyViolation) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            codes::POLICY_VIOLATION,
            e.0,
        )
    }
}
