use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use serde::Deserialize;
use vellum_http::{ApiError, Json, Query};
use vellum_wire::{
    AckRequest, DeviceState, GroupEntries, LogEntry, LogHead, QueuedReceipt, QueuedWelcome,
    SyncResponse,
};

use vellum_store::{last_seen_is_stale, SyncView};

use super::{ErrorBody, St};
use crate::auth::AuthedDevice;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SyncQuery {
    /// Most log entries to return (capped by the server's own limit).
    #[param(minimum = 0)]
    limit: Option<usize>,
}

/// Everything pending for the calling device, oldest first.
#[utoipa::path(get, path = "/v1/sync", tag = "sync",
    params(SyncQuery),
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 200, description = "Pending welcomes, log entries and receipts, which of this device's chats a legal hold keeps, and the key directory's size (a device waiting for approval gets only that)", body = SyncResponse),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn sync(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Query(q): Query<SyncQuery>,
) -> Result<Json<SyncResponse>, ApiError> {
    let limit = q
        .limit
        .unwrap_or(state.config.sync_limit)
        .clamp(1, state.config.sync_limit);
    // Only for the device list, to a minute's precision, so most syncs write nothing; and
    // a full disk must not stop syncs.
    let now = state.now_secs();
    if last_seen_is_stale(me.last_seen, now) {
        if let Err(e) = state.store.touch_device(&me.device_id, now).await {
            tracing::warn!(error = %e, "cannot note a device's sync");
        }
    }
    let directory_size = state.current_directory().await?.size();
    if me.state == DeviceState::Pending {
        // A device waiting for approval receives nothing but the directory's size.
        return Ok(Json(SyncResponse {
            welcomes: Vec::new(),
            groups: Vec::new(),
            receipts: Vec::new(),
            held_chats: Vec::new(),
            directory_size,
            more: false,
        }));
    }
    // Everything the device is handed, in one read transaction.
    let SyncView {
        pending,
        receipts,
        held_chats,
    } = state.store.sync_view(&me.device_id, limit).await?;
    let instance_id = state.store.instance_id().await?;
    let heads: std::collections::HashMap<_, _> = pending.heads.into_iter().collect();
    Ok(Json(SyncResponse {
        held_chats,
        directory_size,
        receipts: receipts
            .into_iter()
            .map(|(id, receipt)| QueuedReceipt { id, receipt })
            .collect(),
        welcomes: pending
            .welcomes
            .into_iter()
            .map(|w| QueuedWelcome {
                id: w.id,
                group_id: w.group_id,
                welcome: w.payload.into(),
            })
            .collect(),
        groups: pending
            .groups
            .into_iter()
            .map(|(group_id, entries)| GroupEntries {
                head: heads.get(&group_id).map(|h| LogHead {
                    instance_id: instance_id.clone(),
                    seq: h.seq,
                    log_hash: hex::encode(h.log_hash),
                }),
                group_id,
                entries: entries
                    .into_iter()
                    .map(|e| LogEntry {
                        seq: e.seq,
                        epoch: e.epoch,
                        kind: e.kind,
                        sender_device: e.sender_device,
                        received_at: e.received_at,
                        payload: e.payload.into(),
                        log_hash: Some(hex::encode(e.log_hash)),
                    })
                    .collect(),
            })
            .collect(),
        more: pending.more,
    }))
}

/// The device has durably processed these welcomes, log entries and receipts: all of it or,
/// on any error, none. At most what one sync hands out of each.
#[utoipa::path(post, path = "/v1/ack", tag = "sync",
    request_body = AckRequest,
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 204, description = "Acknowledged"),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn ack(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Json(req): Json<AckRequest>,
) -> Result<StatusCode, ApiError> {
    // An ack names what one sync handed out. A longer one would hold the store's write lock
    // (on PostgreSQL every node's) for as long as it takes to go through.
    let most = state.config.sync_limit;
    if req.welcomes.len() > most || req.cursors.len() > most || req.receipts.len() > most {
        return Err(ApiError::bad_request(format!(
            "an ack names at most {most} welcomes, {most} cursors and {most} receipts: what one sync hands out"
        )));
    }
    let too_large = |n: &u64| i64::try_from(*n).is_err();
    if req.welcomes.iter().any(too_large)
        || req.receipts.iter().any(too_large)
        || req.cursors.iter().any(|c| too_large(&c.seq))
    {
        return Err(ApiError::bad_request(
            "ids and seqs in an ack are at most 2^63 - 1",
        ));
    }
    let cursors: Vec<(String, u64)> = req
        .cursors
        .into_iter()
        .map(|c| (c.group_id, c.seq))
        .collect();
    state
        .store
        .ack(&me.device_id, &req.welcomes, &cursors, &req.receipts)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
