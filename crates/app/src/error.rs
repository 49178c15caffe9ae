//! The window's errors: `vellum_http::ApiError` (`{code, message}`), mapped from the client's.

use axum::http::StatusCode;
use vellum_client::Error;
use vellum_http::ApiError;

/// The code of every answer after this device was revoked (its profile is wiped).
pub const REVOKED: &str = "revoked";

/// What the window says when a client operation fails. Messages name what went wrong,
/// never a message's content (the client's errors never carry it).
pub fn client_error(error: Error) -> ApiError {
    let message = error.to_string();
    match error {
        Error::Api { status, code, .. } => {
            let status = StatusCode::from_u16(status)
                .ok()
                .filter(|s| s.is_client_error())
                .unwrap_or(StatusCode::BAD_GATEWAY);
            ApiError::new(status, server_code(&code), message)
        }
        Error::Network(_) => ApiError::new(StatusCode::BAD_GATEWAY, "offline", message),
        Error::Invalid(_) => ApiError::bad_request(message),
        Error::NotEnrolled(_) => ApiError::new(StatusCode::CONFLICT, "not_enrolled", message),
        Error::AlreadyEnrolled(_) => {
            ApiError::new(StatusCode::CONFLICT, "already_enrolled", message)
        }
        Error::UnknownChat(_) => ApiError::not_found(message),
        Error::AmbiguousChat(_) => ApiError::bad_request(message),
        Error::RemovedFromChat => ApiError::new(StatusCode::GONE, "removed", message),
        Error::Directory(_) => ApiError::new(StatusCode::BAD_GATEWAY, "directory", message),
        Error::Revoked => ApiError::new(StatusCode::GONE, REVOKED, message),
        Error::Mls(_) | Error::Store(_) | Error::Io(_) => {
            tracing::warn!(error = %message, "device operation failed");
            ApiError::internal()
        }
    }
}

/// The server's code, as one of ours (`ApiError` holds a `&'static str`); the window
/// tells these apart, the rest it shows by their message.
fn server_code(code: &str) -> &'static str {
    use vellum_http::codes::*;
    [
        NOT_CHAT_ADMIN,
        POLICY_VIOLATION,
        FILE_TOO_LARGE,
        QUOTA_EXCEEDED,
        FILES_FORBIDDEN,
        DEVICE_PENDING,
        UNKNOWN_USER,
        INVALID_CODE,
        NO_KEY_PACKAGE,
        RATE_LIMITED,
        NOT_MEMBER,
        APPROVAL_OUT_OF_ORDER,
    ]
    .into_iter()
    .find(|known| *known == code)
    .unwrap_or("server_refused")
}
