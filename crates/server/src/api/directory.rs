//! `/v1/directory/*`: the key directory (issue 9). Devices read it whole and check it
//! against cosigned checkpoints; they post only what their user's identity key signed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use vellum_directory::Change;
use vellum_http::{codes, ApiError, Json, Query};
use vellum_store::DeviceChange;
use vellum_wire::{
    DeviceState, DirectoryAppended, DirectoryCheckpoint, DirectoryConfig, DirectoryEntries,
    DirectoryRange, PostDirectoryChange, RECORDS_USER,
};

use super::{ErrorBody, St};
use crate::auth::AuthedDevice;
use crate::directory::Append;

/// Most entries one page holds.
const MAX_PAGE: u64 = 1000;

/// What a device pins at enrollment: the log's origin and key, the witnesses and quorum.
#[utoipa::path(get, path = "/v1/directory/config", tag = "directory",
    responses(
        (status = 200, description = "The key directory's configuration", body = DirectoryConfig),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn config(State(state): St) -> Result<Json<DirectoryConfig>, ApiError> {
    Ok(Json(state.directory().await?.config().clone()))
}

/// The newest checkpoint that carries the witness quorum, with its cosignatures.
#[utoipa::path(get, path = "/v1/directory/checkpoint", tag = "directory",
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 200, description = "A C2SP signed note", body = DirectoryCheckpoint),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn checkpoint(State(state): St) -> Result<Json<DirectoryCheckpoint>, ApiError> {
    let (_, note) = state.current_directory().await?.checkpoint();
    Ok(Json(DirectoryCheckpoint {
        note: note.to_string(),
    }))
}

/// Leaves from `start`, as far as the checkpoint served reaches.
#[utoipa::path(get, path = "/v1/directory/entries", tag = "directory",
    params(
        ("start" = u64, Query, description = "The first leaf's index"),
        ("limit" = Option<u64>, Query, description = "At most this many (1 to 1000, default 1000)"),
    ),
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 200, description = "Each leaf's exact bytes", body = DirectoryEntries),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn entries(
    State(state): St,
    Query(range): Query<DirectoryRange>,
) -> Result<Json<DirectoryEntries>, ApiError> {
    let limit = range.limit.unwrap_or(MAX_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit is 1 to {MAX_PAGE} entries"
        )));
    }
    // Never past the checkpoint devices are served: they check every leaf against one.
    let size = state.current_directory().await?.size();
    let limit = limit.min(size.saturating_sub(range.start));
    let entries = match limit {
        0 => Vec::new(),
        _ => state.store.directory_entries(range.start, limit).await?,
    };
    Ok(Json(DirectoryEntries {
        start: range.start,
        entries: entries.into_iter().map(Into::into).collect(),
    }))
}

/// A change the caller's user's identity key signed: `identity` (the caller starts its
/// user's identity: a new user's first device, or the earliest device listed at the upgrade),
/// `revoked_by_user` or `reset_vetoed` (made by the caller). Checked against the directory's
/// rules before it is appended.
#[utoipa::path(post, path = "/v1/directory/changes", tag = "directory",
    request_body = PostDirectoryChange,
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 200, description = "Appended at this index", body = DirectoryAppended),
        (status = 422, description = "`directory_refused`: the change breaks the directory's rules", body = ErrorBody),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn post_change(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Json(req): Json<PostDirectoryChange>,
) -> Result<Json<DirectoryAppended>, ApiError> {
    if me.user == RECORDS_USER {
        return Err(not_in_directory());
    }
    let change: Change = serde_json::from_value(req.change)
        .map_err(|e| ApiError::bad_request(format!("not a directory change: {e}")))?;
    let devices = match &change {
        Change::Identity { device, .. } => {
            super::approvals::own_device(
                &state,
                &me,
                device,
                "an identity names the device that posts it, with its registered key",
            )
            .await?;
            if me.state == DeviceState::Legacy {
                earliest_legacy(&state, &me).await?;
            }
            Some(DeviceChange::Approve {
                device_id: me.device_id.clone(),
                sealed_identity: None,
            })
        }
        Change::RevokedByUser {
            device_id,
            by_device,
            ..
        } => {
            made_by_me(by_device, &me)?;
            Some(DeviceChange::Revoke {
                device_id: device_id.clone(),
            })
        }
        Change::ResetVetoed { by_device, .. } => {
            made_by_me(by_device, &me)?;
            None
        }
        other => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                codes::DIRECTORY_REFUSED,
                format!(
                "a device posts identity, revoked_by_user and reset_vetoed changes only, not {}",
                other.kind()
            ),
            ))
        }
    };
    let directory = state.directory().await?;
    let appended = directory
        .append(&state.store, state.now_secs(), |_| {
            Ok(vec![Append {
                user: me.user.clone(),
                change: change.clone(),
                devices: devices.clone(),
            }])
        })
        .await?
        .ok_or_else(ApiError::internal)?;
    Ok(Json(DirectoryAppended {
        index: appended.start,
    }))
}

pub(crate) fn not_in_directory() -> ApiError {
    ApiError::bad_request(
        "the user records is not in the key directory: the custodians bind the org's archiver",
    )
}

fn made_by_me(by_device: &str, me: &AuthedDevice) -> Result<(), ApiError> {
    if by_device != me.device_id {
        return Err(ApiError::bad_request(
            "by_device names the device that posts the change",
        ));
    }
    Ok(())
}

/// Of the devices listed at the upgrade, the earliest not revoked starts its user's
/// identity; the others confirm through an approval by it.
async fn earliest_legacy(state: &crate::AppState, me: &AuthedDevice) -> Result<(), ApiError> {
    let earliest = state
        .store
        .user_device_records(&me.user)
        .await?
        .into_iter()
        .find(|r| r.state == DeviceState::Legacy);
    match earliest {
        Some(r) if r.device.device_id == me.device_id => Ok(()),
        Some(r) => Err(ApiError::forbidden(format!(
            "device {} (the earliest of {}'s devices) starts the identity; this one is then approved by it",
            r.device.device_id, me.user
        ))),
        None => Err(ApiError::internal()),
    }
}
