//! What the org's archiver device does through the delivery server.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use vellum_http::{codes, ApiError, Json};
use vellum_wire::{HeldUsers, LogKey, PostReceipts};

use super::{ErrorBody, St};
use crate::auth::AuthedDevice;
use crate::state::AppState;

async fn require_archiver(state: &AppState, me: &AuthedDevice) -> Result<(), ApiError> {
    let archiver = state.store.org_policy().await?.archiver_device;
    if archiver.as_deref() != Some(me.device_id.as_str()) {
        return Err(ApiError::forbidden("only the org's archiver may do this"));
    }
    Ok(())
}

const MAX_RECEIPTS_PER_POST: usize = 1000;
const MAX_RECEIPT_BYTES: usize = 64 * 1024;

/// The archiver hands out receipts for the senders' devices.
#[utoipa::path(post, path = "/v1/receipts", tag = "records",
    request_body = PostReceipts,
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 204, description = "Queued (undeliverable receipts are dropped)"),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn post_receipts(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Json(req): Json<PostReceipts>,
) -> Result<StatusCode, ApiError> {
    require_archiver(&state, &me).await?;
    if req.receipts.len() > MAX_RECEIPTS_PER_POST {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::TOO_LARGE,
            "too many receipts in one request",
        ));
    }
    // One receipt that cannot be delivered (too large, or for a device that is gone) must
    // not hold back the others: it is dropped, and the rest are queued.
    let mut queued = Vec::with_capacity(req.receipts.len());
    for r in req.receipts {
        if r.receipt.len() > MAX_RECEIPT_BYTES || state.store.device(&r.device_id).await?.is_none()
        {
            tracing::warn!(device = %r.device_id, "dropping an undeliverable receipt");
            continue;
        }
        queued.push((r.device_id, r.receipt));
    }
    let devices: Vec<String> = queued.iter().map(|(d, _)| d.clone()).collect();
    state.store.queue_receipts(queued).await?;
    state.notifier.wake(&devices);
    Ok(StatusCode::NO_CONTENT)
}

/// The archiver publishes its checkpoint key for receipts.
#[utoipa::path(put, path = "/v1/records/log-key", tag = "records",
    request_body = LogKey,
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 204, description = "Stored"),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn put_log_key(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Json(req): Json<LogKey>,
) -> Result<StatusCode, ApiError> {
    require_archiver(&state, &me).await?;
    vellum_tlog::NoteVerifier::parse(&req.verifier_key)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    state.store.set_records_log_key(&req.verifier_key).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The most users one list of legal holds may name.
const MAX_HELD_USERS: usize = 10_000;

/// The archiver reports every user a legal hold in force names (the whole list, replacing
/// the last one). Members of those users' transitory chats learn at their next sync that the
/// chat's timers are suspended (or, where the org's policy says so, that it must convert).
#[utoipa::path(put, path = "/v1/records/held-users", tag = "records",
    request_body = HeldUsers,
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 204, description = "Stored"),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn put_held_users(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Json(req): Json<HeldUsers>,
) -> Result<StatusCode, ApiError> {
    require_archiver(&state, &me).await?;
    if req.users.len() > MAX_HELD_USERS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::TOO_LARGE,
            format!("at most {MAX_HELD_USERS} users"),
        ));
    }
    for user in &req.users {
        super::admin::valid_name(user)?;
    }
    let mut users = req.users;
    users.sort();
    users.dedup();
    if state.store.held_users().await? != users {
        state.store.set_held_users(users).await?;
        // Any chat may now show (or stop showing) a hold: every device syncs once.
        state.notifier.wake_all();
    }
    Ok(StatusCode::NO_CONTENT)
}
