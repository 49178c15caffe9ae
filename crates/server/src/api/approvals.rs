//! `/v1/devices` and `/v1/approvals/*`: a user's devices, and the approval of a new device
//! by one of its user's devices (issue 9), relayed step by step. The server only keeps the
//! steps in order; the devices check everything that matters (`vellum_directory::sas`), and
//! only the user's identity key can sign the approval into the key directory.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use vellum_directory::{commitment, ApproverHello, Change, DeviceOffer, SEALED_IDENTITY_LEN};
use vellum_http::{codes, ApiError, Json, Path};
use vellum_store::{Approval, DeviceChange, DeviceRecord};
use vellum_wire::{
    ApprovalExchange, CompleteApproval, DeviceInfo, DeviceList, DeviceState, DirectoryAppended,
    PutCommitment, PutHello, PutOffer, RECORDS_USER,
};

use super::directory::not_in_directory;
use super::{ErrorBody, St};
use crate::auth::AuthedDevice;
use crate::directory::Append;
use crate::AppState;

pub(crate) fn device_info(record: DeviceRecord) -> DeviceInfo {
    DeviceInfo {
        device_id: record.device.device_id,
        user: record.device.user,
        state: record.state,
        signature_key: record.device.signature_key.into(),
        enrolled_at: record.enrolled_at,
        last_seen: record.last_seen,
    }
}

/// Every device of the caller's user, revoked ones too, oldest first.
#[utoipa::path(get, path = "/v1/devices", tag = "approvals",
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 200, description = "The user's devices", body = DeviceList),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn list_devices(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
) -> Result<Json<DeviceList>, ApiError> {
    let devices = state.store.user_device_records(&me.user).await?;
    Ok(Json(DeviceList {
        devices: devices.into_iter().map(device_info).collect(),
    }))
}

fn out_of_order(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, codes::APPROVAL_OUT_OF_ORDER, message)
}

/// The store's refusal of a step out of order is 409 `approval_out_of_order`.
fn step_error(e: vellum_store::Error) -> ApiError {
    match e {
        vellum_store::Error::Refused(message) => out_of_order(message),
        other => other.into(),
    }
}

fn json_field(text: Option<String>) -> Option<serde_json::Value> {
    // Stored by this server from a parsed value: it parses again.
    text.and_then(|t| serde_json::from_str(&t).ok())
}

fn exchange(device_id: &str, approval: Option<Approval>) -> ApprovalExchange {
    let approval = approval.unwrap_or_default();
    ApprovalExchange {
        device_id: device_id.to_owned(),
        commitment: approval.commitment,
        hello: json_field(approval.hello),
        offer: json_field(approval.offer),
        sealed_identity: approval.sealed_identity.map(Into::into),
    }
}

/// The exchange's new device must still need approval: pending, or listed at the upgrade.
fn awaits_approval(state: DeviceState) -> Result<(), ApiError> {
    match state {
        DeviceState::Pending | DeviceState::Legacy => Ok(()),
        _ => Err(out_of_order(
            "this device is approved already: there is nothing to approve",
        )),
    }
}

/// The new device's own steps need a device of an ordinary user.
fn new_device(me: &AuthedDevice) -> Result<(), ApiError> {
    if me.user == RECORDS_USER {
        return Err(not_in_directory());
    }
    awaits_approval(me.state)
}

/// Step 0 (the new device): commits to its offer; starts the exchange again if one was
/// under way.
#[utoipa::path(put, path = "/v1/approvals/me/commitment", tag = "approvals",
    request_body = PutCommitment,
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 204, description = "Stored; an approved device of the user answers next"),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn put_commitment(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Json(req): Json<PutCommitment>,
) -> Result<StatusCode, ApiError> {
    new_device(&me)?;
    let valid = req.commitment.len() == 64
        && req
            .commitment
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !valid {
        return Err(ApiError::bad_request(
            "the commitment is a SHA-256 hash in lower-case hex",
        ));
    }
    state
        .store
        .set_approval_commitment(&me.device_id, &req.commitment, state.now_secs())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's own exchange: the approver's hello once it answered, the sealed identity
/// once it approved. Empty if none is under way.
#[utoipa::path(get, path = "/v1/approvals/me", tag = "approvals",
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 200, description = "The exchange so far", body = ApprovalExchange),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn get_mine(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
) -> Result<Json<ApprovalExchange>, ApiError> {
    let approval = state.store.approval(&me.device_id).await?;
    Ok(Json(exchange(&me.device_id, approval)))
}

/// Step 2 (the new device, after the hello): reveals the offer it committed to.
#[utoipa::path(put, path = "/v1/approvals/me/offer", tag = "approvals",
    request_body = PutOffer,
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 204, description = "Stored; the approver types the code this device shows"),
        (status = 409, description = "`approval_out_of_order`: no hello yet, or revealed already", body = ErrorBody),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn put_offer(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Json(req): Json<PutOffer>,
) -> Result<StatusCode, ApiError> {
    new_device(&me)?;
    let offer: DeviceOffer = serde_json::from_value(req.offer)
        .map_err(|e| ApiError::bad_request(format!("not a device offer: {e}")))?;
    own_device(&state, &me, &offer.device, EXCHANGE_DEVICE).await?;
    let approval = state.store.approval(&me.device_id).await?;
    let Some(Approval {
        commitment: Some(committed),
        hello: Some(_),
        offer: None,
        ..
    }) = approval
    else {
        return Err(out_of_order(
            "no approving device has answered this exchange yet, or the offer was revealed already",
        ));
    };
    if committed != hex::encode(commitment(&me.user, &offer)) {
        return Err(ApiError::bad_request(
            "the offer is not the one this device committed to",
        ));
    }
    let text = serde_json::to_string(&offer).map_err(|_| ApiError::internal())?;
    state
        .store
        .set_approval_offer(&me.device_id, &text, state.now_secs())
        .await
        .map_err(step_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends the caller's exchange (after it took its sealed identity, or to give up).
#[utoipa::path(delete, path = "/v1/approvals/me", tag = "approvals",
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 204, description = "Ended (or there was none)"),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn delete_mine(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_approval(&me.device_id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

const EXCHANGE_DEVICE: &str =
    "the exchange names the device taking part in it, with its registered key";

/// `device` must be the caller as registered (its id and signature key); `why` says so.
pub(crate) async fn own_device(
    state: &AppState,
    me: &AuthedDevice,
    device: &vellum_directory::DeviceRef,
    why: &str,
) -> Result<(), ApiError> {
    let registered = state
        .store
        .device(&me.device_id)
        .await?
        .ok_or_else(ApiError::internal)?;
    if device.device_id != me.device_id
        || device.signature_key.as_slice() != registered.signature_key
    {
        return Err(ApiError::bad_request(why));
    }
    Ok(())
}

/// The approver's view: the caller must be approved (it holds the identity key), and the
/// device one of its own user's (another user's is not found).
async fn approver_and_target(
    state: &AppState,
    me: &AuthedDevice,
    device_id: &str,
) -> Result<DeviceRecord, ApiError> {
    if me.user == RECORDS_USER {
        return Err(not_in_directory());
    }
    if me.state != DeviceState::Approved {
        return Err(ApiError::forbidden(
            "only an approved device of the user (one holding its identity key) approves devices",
        ));
    }
    state
        .store
        .device_record(device_id)
        .await?
        .filter(|r| r.device.user == me.user && r.state != DeviceState::Revoked)
        .ok_or_else(|| ApiError::not_found(format!("{} has no device {device_id:?}", me.user)))
}

/// The exchange of a device of the caller's user (step 1 reads the commitment, step 3 the
/// offer).
#[utoipa::path(get, path = "/v1/approvals/{device_id}", tag = "approvals",
    params(("device_id" = String, Path, description = "The device to approve")),
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 200, description = "The exchange so far", body = ApprovalExchange),
        (status = "4XX", description = "Refused (see code; 404: not a device of the caller's user)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn get_exchange(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Path(device_id): Path<String>,
) -> Result<Json<ApprovalExchange>, ApiError> {
    approver_and_target(&state, &me, &device_id).await?;
    let approval = state.store.approval(&device_id).await?;
    Ok(Json(exchange(&device_id, approval)))
}

/// Step 1 (an approved device of the same user): answers the new device's commitment with
/// its hello (its device, the user's identity key, a fresh nonce).
#[utoipa::path(put, path = "/v1/approvals/{device_id}/hello", tag = "approvals",
    params(("device_id" = String, Path, description = "The device to approve")),
    request_body = PutHello,
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 204, description = "Stored; the new device reveals its offer next"),
        (status = 409, description = "`approval_out_of_order`: no commitment yet, or the offer was revealed already", body = ErrorBody),
        (status = "4XX", description = "Refused (see code; 404: not a device of the caller's user)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn put_hello(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Path(device_id): Path<String>,
    Json(req): Json<PutHello>,
) -> Result<StatusCode, ApiError> {
    let target = approver_and_target(&state, &me, &device_id).await?;
    awaits_approval(target.state)?;
    let hello: ApproverHello = serde_json::from_value(req.hello)
        .map_err(|e| ApiError::bad_request(format!("not an approver's hello: {e}")))?;
    own_device(&state, &me, &hello.device, EXCHANGE_DEVICE).await?;
    let identity = state
        .directory()
        .await?
        .read(|d| d.user(&me.user).and_then(|u| u.identity))
        .await
        .ok_or_else(|| {
            out_of_order(format!(
                "{} has no identity in the key directory yet: this device posts it first",
                me.user
            ))
        })?;
    if hello.identity_key != identity {
        return Err(ApiError::bad_request(format!(
            "the hello names another identity key than {}'s",
            me.user
        )));
    }
    let text = serde_json::to_string(&hello).map_err(|_| ApiError::internal())?;
    state
        .store
        .set_approval_hello(&device_id, &text, state.now_secs())
        .await
        .map_err(step_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Step 3 (the approver, after the codes matched): the `approved` change its user's identity
/// key signed, and the identity key sealed to the new device. The change is checked against
/// the directory's rules and appended; the device is approved in the same transaction.
#[utoipa::path(post, path = "/v1/approvals/{device_id}/complete", tag = "approvals",
    params(("device_id" = String, Path, description = "The device to approve")),
    request_body = CompleteApproval,
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 200, description = "Approved: the change's index in the key directory", body = DirectoryAppended),
        (status = 409, description = "`approval_out_of_order`: the offer is not revealed yet, or the device was approved already", body = ErrorBody),
        (status = 422, description = "`directory_refused`: the change breaks the directory's rules", body = ErrorBody),
        (status = "4XX", description = "Refused (see code; 404: not a device of the caller's user)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn complete(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Path(device_id): Path<String>,
    Json(req): Json<CompleteApproval>,
) -> Result<Json<DirectoryAppended>, ApiError> {
    let target = approver_and_target(&state, &me, &device_id).await?;
    awaits_approval(target.state)?;
    if req.sealed_identity.len() != SEALED_IDENTITY_LEN {
        return Err(ApiError::bad_request(format!(
            "the sealed identity is {SEALED_IDENTITY_LEN} bytes"
        )));
    }
    let change: Change = serde_json::from_value(req.change)
        .map_err(|e| ApiError::bad_request(format!("not a directory change: {e}")))?;
    let Change::Approved {
        device, by_device, ..
    } = &change
    else {
        return Err(ApiError::bad_request(
            "an approval completes with an approved change",
        ));
    };
    if device.device_id != device_id
        || device.signature_key.as_slice() != target.device.signature_key
        || by_device != &me.device_id
    {
        return Err(ApiError::bad_request(
            "the change approves this device with its registered key, by the calling device",
        ));
    }
    let revealed = state
        .store
        .approval(&device_id)
        .await?
        .is_some_and(|a| a.offer.is_some() && a.sealed_identity.is_none());
    if !revealed {
        return Err(out_of_order(
            "the new device has not revealed its offer yet, or was approved already",
        ));
    }
    let sealed = req.sealed_identity.into_inner();
    let appended = state
        .directory()
        .await?
        .append(&state.store, state.now_secs(), |_| {
            Ok(vec![Append {
                user: me.user.clone(),
                change: change.clone(),
                devices: Some(DeviceChange::Approve {
                    device_id: device_id.clone(),
                    sealed_identity: Some(sealed.clone()),
                }),
            }])
        })
        .await?
        .ok_or_else(ApiError::internal)?;
    Ok(Json(DirectoryAppended {
        index: appended.start,
    }))
}

/// Cancels the exchange of a device of the caller's user (a wrong code): commitment, hello
/// and offer are dropped, nothing is approved; the new device starts again.
#[utoipa::path(delete, path = "/v1/approvals/{device_id}", tag = "approvals",
    params(("device_id" = String, Path, description = "The device whose approval is cancelled")),
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 204, description = "Cancelled (or there was nothing to cancel)"),
        (status = 409, description = "`approval_out_of_order`: the device was approved already", body = ErrorBody),
        (status = "4XX", description = "Refused (see code; 404: not a device of the caller's user)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn cancel(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Path(device_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    approver_and_target(&state, &me, &device_id).await?;
    state
        .store
        .delete_approval(&device_id, true)
        .await
        .map_err(step_error)?;
    Ok(StatusCode::NO_CONTENT)
}
