use axum::extract::State;
use vellum_http::{ApiError, Json};
use vellum_store::Device;
use vellum_wire::{EnrollRequest, EnrollResponse, RECORDS_USER};

use super::{ErrorBody, St};
use crate::api::admin::code_hash;

/// A new device presents its enrollment code and its Ed25519 signature key; the org answers
/// with a signed device certificate, and the device's state: `approved` for its user's first
/// device (which then posts the user's identity to the key directory), `pending` for any
/// other, until a device of its user approves it.
#[utoipa::path(post, path = "/v1/enroll", tag = "enroll",
    request_body = EnrollRequest,
    responses(
        (status = 200, description = "Enrolled", body = EnrollResponse),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn enroll(
    State(state): St,
    Json(req): Json<EnrollRequest>,
) -> Result<Json<EnrollResponse>, ApiError> {
    if req.signature_key.len() != 32 {
        return Err(ApiError::bad_request(
            "signature_key must be a 32-byte Ed25519 public key",
        ));
    }
    let hash = code_hash(&req.code);
    let now = state.now_secs();
    let user = state.store.enrollment_code_user(hash, now).await?;
    if user != req.user {
        return Err(vellum_store::Error::InvalidCode.into());
    }
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|_| ApiError::internal())?;
    let device_id = hex::encode(raw);
    let certificate = state.org.issue(&user, &device_id, &req.signature_key);
    // A user whose identity is in the key directory gets new devices only through an
    // approval by one of its devices (the archiver is bound by the custodians instead).
    // Current with the store: the identity may have been posted through another node.
    let has_identity = user != RECORDS_USER
        && state
            .current_directory()
            .await?
            .read(|d| d.user(&user).is_some_and(|u| u.identity.is_some()))
            .await;
    let device_state = state
        .store
        .enroll_device(
            hash,
            now,
            Device {
                device_id: device_id.clone(),
                user,
                signature_key: req.signature_key.0,
            },
            has_identity,
        )
        .await?;
    Ok(Json(EnrollResponse {
        device_id,
        credential: certificate.to_bytes().into(),
        org_key: state.org.public_key().to_bytes().to_vec().into(),
        state: device_state,
    }))
}
