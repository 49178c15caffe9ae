use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use vellum_http::{codes, ApiError, Json};
use vellum_wire::{
    ClaimKeyPackages, ClaimedKeyPackage, ClaimedKeyPackages, DeviceState, KeyPackageCount,
    UploadKeyPackages, B64, RECORDS_USER,
};

use super::{ErrorBody, St};
use crate::auth::AuthedDevice;

const MAX_KEY_PACKAGES_PER_UPLOAD: usize = 200;

/// Uploads this device's own key packages (and optionally a last-resort one).
#[utoipa::path(post, path = "/v1/key-packages", tag = "key-packages",
    request_body = UploadKeyPackages,
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 204, description = "Stored"),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn upload(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Json(req): Json<UploadKeyPackages>,
) -> Result<StatusCode, ApiError> {
    if req.key_packages.len() > MAX_KEY_PACKAGES_PER_UPLOAD {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_KEY_PACKAGES_PER_UPLOAD} key packages per upload"
        )));
    }
    // Every key package must be this device's own, valid under the org.
    let req = Arc::new(req);
    let checked = req.clone();
    let device_id = me.device_id.clone();
    state
        .blocking(move |state| {
            for kp in checked
                .key_packages
                .iter()
                .chain(checked.last_resort.iter())
            {
                let cert = state.tracker.key_package_owner(kp)?;
                if cert.device_id != device_id {
                    return Err(ApiError::forbidden("key package belongs to another device"));
                }
            }
            Ok(())
        })
        .await?;
    let req = Arc::try_unwrap(req).unwrap_or_else(|shared| (*shared).clone());
    let single = req.key_packages.into_iter().map(B64::into_inner).collect();
    state
        .store
        .add_key_packages(&me.device_id, single, req.last_resort.map(B64::into_inner))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How many key packages of this device are left.
#[utoipa::path(get, path = "/v1/key-packages/count", tag = "key-packages",
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 200, description = "Counts", body = KeyPackageCount),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn count(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
) -> Result<Json<KeyPackageCount>, ApiError> {
    let (single_use, has_last_resort) = state.store.key_package_count(&me.device_id).await?;
    Ok(Json(KeyPackageCount {
        single_use,
        has_last_resort,
    }))
}

const MAX_CLAIM_USERS: usize = 1000;

/// Approved devices and those that existed before the key directory: never one waiting for
/// approval or revoked.
fn claimable(state: DeviceState) -> bool {
    matches!(state, DeviceState::Approved | DeviceState::Legacy)
}

async fn check_has_key_package(
    state: &crate::state::AppState,
    device: &vellum_store::Device,
) -> Result<(), ApiError> {
    let (single, last_resort) = state.store.key_package_count(&device.device_id).await?;
    if single == 0 && !last_resort {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            codes::NO_KEY_PACKAGE,
            format!("a device of {:?} has no key package", device.user),
        ));
    }
    Ok(())
}

/// Claims one key package for every device of each user (other than the caller), and one
/// for each device named. For the user `records` only the org's archiver device is claimed.
/// Devices waiting for approval are never claimed. Each device has a budget of key
/// packages it may claim (429 `rate_limited` past it).
#[utoipa::path(post, path = "/v1/key-packages/claim", tag = "key-packages",
    request_body = ClaimKeyPackages,
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 200, description = "Claimed", body = ClaimedKeyPackages),
        (status = "4XX", description = "Refused (see code; 429: this device's claim budget is spent)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn claim(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Json(req): Json<ClaimKeyPackages>,
) -> Result<Json<ClaimedKeyPackages>, ApiError> {
    if req.users.len() + req.devices.len() > MAX_CLAIM_USERS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_CLAIM_USERS} users and devices per claim"
        )));
    }
    let archiver = state.store.org_policy().await?.archiver_device;
    // Check everything first, so a failed claim consumes no key package.
    let mut targets = Vec::new();
    for device_id in &req.devices {
        // Only devices the key directory may vouch for are handed out: one waiting for
        // approval (or revoked) is not.
        let device = state
            .store
            .device_record(device_id)
            .await?
            .filter(|r| claimable(r.state))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    codes::NOT_FOUND,
                    format!("no enrolled and approved device {device_id:?}"),
                )
            })?
            .device;
        check_has_key_package(&state, &device).await?;
        targets.push(device);
    }
    for user in &req.users {
        let mut devices: Vec<_> = state
            .store
            .user_device_records(user)
            .await?
            .into_iter()
            .filter(|r| claimable(r.state))
            .map(|r| r.device)
            .collect();
        if user == RECORDS_USER {
            // The archiver's identity has one device; any other is never handed out.
            devices.retain(|d| archiver.as_deref() == Some(d.device_id.as_str()));
        }
        if devices.is_empty() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                codes::UNKNOWN_USER,
                format!("no enrolled user {user:?}"),
            ));
        }
        for device in devices.into_iter().filter(|d| d.device_id != me.device_id) {
            check_has_key_package(&state, &device).await?;
            targets.push(device);
        }
    }
    let mut seen = std::collections::HashSet::new();
    targets.retain(|d| seen.insert(d.device_id.clone()));
    // Each key package handed out is one another device can no longer give anyone: a
    // device's claims are budgeted in key packages, and a claim over budget takes none.
    if !state.claim_limiter.take(&me.device_id, targets.len()) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            codes::RATE_LIMITED,
            format!(
                "this device has claimed too many key packages ({} asked); try again later",
                targets.len()
            ),
        ));
    }
    let mut key_packages = Vec::with_capacity(targets.len());
    for device in targets {
        let kp = state
            .store
            .claim_key_package(&device.device_id)
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    codes::NO_KEY_PACKAGE,
                    format!("a device of {:?} has no key package", device.user),
                )
            })?;
        key_packages.push(ClaimedKeyPackage {
            user: device.user,
            device_id: device.device_id,
            key_package: kp.into(),
        });
    }
    Ok(Json(ClaimedKeyPackages { key_packages }))
}
