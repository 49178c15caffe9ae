use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::{engine::general_purpose::STANDARD, Engine};
use subtle::ConstantTimeEq;
use vellum_wire::{codes, request_signing_bytes, AuthHeaders, DeviceState, MAX_CLOCK_SKEW_SECS};

use vellum_store::NonceCheck;

use crate::config::admin_hash;
use crate::state::AppState;
use crate::ApiError;

/// The device a request was signed by; set by [`device_auth`].
#[derive(Debug, Clone)]
pub struct AuthedDevice {
    pub device_id: String,
    pub user: String,
    /// `approved` or `legacy`; `pending` only on the routes [`pending_may`] allows,
    /// `revoked` only on those [`revoked_may`] allows.
    pub state: DeviceState,
    /// When its sync was last noted (Unix seconds), as its record said at this request.
    pub last_seen: Option<i64>,
}

/// What a device waiting for approval may do: read the key directory, its user's devices
/// and the policy, run its approval exchange, keep its key packages on file (they are not
/// handed out until it is approved) and sync (which answers nothing but the directory's
/// size). Everything else is 403 `device_pending`.
fn pending_may(method: &Method, path: &str) -> bool {
    let get = method == Method::GET;
    (get && (path.starts_with("/v1/directory/")
        || [
            "/v1/devices",
            "/v1/policy",
            "/v1/sync",
            "/v1/key-packages/count",
        ]
        .contains(&path)))
        || path == "/v1/approvals/me"
        || path.starts_with("/v1/approvals/me/")
        || (method == Method::POST && path == "/v1/key-packages")
}

/// What a revoked device may do: read the key directory, so that it wipes itself only when
/// the directory (which the server cannot forge) says it was revoked, not on the server's
/// word alone. Everything else is 403 `device_revoked`.
fn revoked_may(method: &Method, path: &str) -> bool {
    method == Method::GET
        && [
            "/v1/directory/config",
            "/v1/directory/checkpoint",
            "/v1/directory/entries",
        ]
        .contains(&path)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, ApiError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthenticated(format!("missing or invalid {name} header")))
}

/// Verifies the device signature over method, path, timestamp, nonce and body and refuses
/// stale timestamps; applies the device's rate limit; then refuses reused nonces (replays)
/// and timestamps from before the server started. Nothing here writes to disk.
pub async fn device_auth(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    match authenticate(&state, request).await {
        Ok(request) => next.run(request).await,
        Err(Refused { error, started_at }) => {
            let mut response = error.into_response();
            if let Some(started_at) = started_at {
                // Tells the client from which second on to sign its retry.
                response
                    .headers_mut()
                    .insert(AuthHeaders::SERVER_START, started_at.into());
            }
            response
        }
    }
}

/// Why a request was refused, and the server's start when its timestamp was before it.
struct Refused {
    error: ApiError,
    started_at: Option<i64>,
}

impl<E: Into<ApiError>> From<E> for Refused {
    fn from(e: E) -> Self {
        Self {
            error: e.into(),
            started_at: None,
        }
    }
}

async fn authenticate(state: &AppState, request: Request) -> Result<Request, Refused> {
    let (mut parts, body) = request.into_parts();
    let device_id = header(&parts.headers, AuthHeaders::DEVICE)?.to_owned();
    let timestamp: i64 = header(&parts.headers, AuthHeaders::TIMESTAMP)?
        .parse()
        .map_err(|_| ApiError::unauthenticated("timestamp is not an integer"))?;
    let nonce = header(&parts.headers, AuthHeaders::NONCE)?.to_owned();
    if nonce.is_empty() || nonce.len() > 64 {
        return Err(ApiError::unauthenticated("nonce must be 1 to 64 characters").into());
    }
    let signature = STANDARD
        .decode(header(&parts.headers, AuthHeaders::SIGNATURE)?)
        .map_err(|_| ApiError::unauthenticated("signature is not base64"))?;
    let now = state.now_secs();
    if now.abs_diff(timestamp) > MAX_CLOCK_SKEW_SECS as u64 {
        return Err(
            ApiError::unauthenticated("request timestamp is outside the allowed window").into(),
        );
    }
    // The device (revoked or not) is looked up before the body is read, so a request naming
    // no enrolled device cannot make the server buffer a body at all.
    let record = state
        .store
        .device_record(&device_id)
        .await?
        .ok_or_else(|| ApiError::unauthenticated("unknown device"))?;
    let device = &record.device;
    let body = to_bytes(body, state.config.max_body_bytes)
        .await
        .map_err(body_error)?;
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let signed = request_signing_bytes(
        parts.method.as_str(),
        path,
        &device_id,
        timestamp,
        &nonce,
        &body,
    );
    if !vellum_mls::verify_device_signature(&device.signature_key, &signed, &signature) {
        return Err(ApiError::unauthenticated("bad request signature").into());
    }
    // Only now, under its own key's signature, is a revoked device told so (and it can wipe
    // itself), or a pending one what it may not do. Up to here it was treated as a live
    // device is: a stranger's request with a bad signature gets the same answer either way
    // and cannot tell which ids are revoked. (Answering "unknown device" instead would not
    // hide it: the body must be read to check the signature, and an unknown device's body
    // never is, which a stranger can time.)
    match record.state {
        DeviceState::Revoked if !revoked_may(&parts.method, parts.uri.path()) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                codes::DEVICE_REVOKED,
                "this device was revoked",
            )
            .into())
        }
        DeviceState::Pending if !pending_may(&parts.method, parts.uri.path()) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                codes::DEVICE_PENDING,
                "this device is waiting for approval by another device of its user (`vellum devices approve` there)",
            )
            .into())
        }
        _ => {}
    }
    // The rate limit comes after the signature (a stranger cannot spend a device's tokens)
    // and before the nonce is remembered, so a device over its limit costs no state at all.
    if !state.limiter.allow(&device_id) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            codes::RATE_LIMITED,
            "too many requests; slow down",
        )
        .into());
    }
    // Remembered in memory (no disk write); a nonce is kept while its timestamp is inside
    // the window, and timestamps before the server started are refused.
    // The clock is read again: the body may have taken a while, and the window is judged
    // as it stands when the nonce is remembered.
    let now = state.now_secs();
    let checked = state
        .store
        .remember_nonce(&device_id, &nonce, timestamp, now - MAX_CLOCK_SKEW_SECS)
        .await?;
    let (error, started_at) = match checked {
        NonceCheck::Fresh => {
            parts.extensions.insert(AuthedDevice {
                device_id,
                user: record.device.user,
                state: record.state,
                last_seen: record.last_seen,
            });
            return Ok(Request::from_parts(parts, Body::from(body)));
        }
        NonceCheck::Replayed => (
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                codes::REPLAYED,
                "this request was already received",
            ),
            None,
        ),
        NonceCheck::Expired => (
            ApiError::unauthenticated("request timestamp is outside the allowed window"),
            None,
        ),
        NonceCheck::BeforeStart { started_at } => (
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                codes::BEFORE_SERVER_START,
                format!("the request is timestamped before the server started (at {started_at}); sign it again"),
            ),
            Some(started_at),
        ),
    };
    Err(Refused { error, started_at })
}

/// A body that could not be read: too long (413), or stalled past the body timeout or cut
/// off by the client (408).
fn body_error(e: axum::Error) -> ApiError {
    if e.into_inner().is::<http_body_util::LengthLimitError>() {
        ApiError::too_large()
    } else {
        ApiError::timeout()
    }
}

/// Proof that a request carries the admin token. The whole admin router checks it with
/// `route_layer(from_extractor_with_state::<Admin, _>)`, so no admin route can forget it.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::unauthenticated("admin token required"))?;
        // Only the hash is kept; it is compared in constant time, so the time a refusal
        // takes says nothing about how much of it matched.
        let hash = admin_hash(token);
        if !bool::from(hash.ct_eq(&state.admin_token_hash)) {
            return Err(ApiError::forbidden("invalid admin token"));
        }
        Ok(Admin)
    }
}
