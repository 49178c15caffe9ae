//! What the org's archiver device does through the delivery server, and the records trust
//! every other route checks against: `records.pub` and the custodians' binding on file.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use vellum_http::{codes, ApiError, Json};
use vellum_records::{ArchiverBinding, RecordsPublic, SignedBinding};
use vellum_store::NewBinding;
use vellum_wire::{HeldUsers, PostReceipts, PutBinding, RECORDS_USER};

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

/// The records configuration as the server enforces it.
pub(crate) struct Trust {
    pub public: RecordsPublic,
    /// The enrolled archiver device (not revoked).
    pub archiver_device: Option<String>,
    /// The custodians' newest binding, verified when it was stored.
    pub binding: Option<ArchiverBinding>,
}

impl Trust {
    /// The archiver a new record chat must name: the bound device, if it is still the
    /// enrolled archiver. Otherwise the error names the step that is missing.
    pub fn bound_archiver(&self) -> Result<&str, String> {
        match (&self.binding, &self.archiver_device) {
            (Some(b), Some(device)) if b.archiver_device == *device => Ok(device),
            (Some(_), _) => Err(format!(
                "the archiver was replaced and the new one is not bound yet: {}",
                vellum_records::unbound_archiver(self.public.threshold)
            )),
            (None, _) => Err(vellum_records::unbound_archiver(self.public.threshold)),
        }
    }
}

/// `None` before `records init`.
pub(crate) async fn trust(state: &AppState) -> Result<Option<Trust>, ApiError> {
    let Some(config) = state.store.records_config().await? else {
        return Ok(None);
    };
    let stored = |e: vellum_records::TrustError| {
        tracing::error!(error = %e, "the stored records configuration does not parse");
        ApiError::internal()
    };
    let public = RecordsPublic::parse(&config.records_public).map_err(stored)?;
    let binding = config
        .binding
        .map(|(_, b)| SignedBinding::parse(&b).and_then(|b| b.stored_statement()))
        .transpose()
        .map_err(stored)?;
    Ok(Some(Trust {
        public,
        archiver_device: config.archiver_device,
        binding,
    }))
}

const MAX_RECEIPTS_PER_POST: usize = 1000;
const MAX_RECEIPT_BYTES: usize = 64 * 1024;
/// A binding names a handful of keys: far below this.
const MAX_BINDING_BYTES: usize = 16 * 1024;

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

/// The archiver hands in the custodians' binding it got at an unseal. Kept only if it is
/// signed with the binding key of the stored `records.pub`, names the calling device (the
/// org's archiver) and its registered signature key, and has a higher serial than the one on
/// file. `records_public` may replace a stored version 1 with version 2 of the same key.
#[utoipa::path(put, path = "/v1/records/binding", tag = "records",
    request_body = PutBinding,
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 204, description = "Stored (or this very binding was on file already)"),
        (status = "4XX", description = "Refused (see code; 403: not signed by the custodians or not this archiver; 409: an equal or higher serial is on file)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn put_binding(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Json(req): Json<PutBinding>,
) -> Result<StatusCode, ApiError> {
    if req.binding.len() > MAX_BINDING_BYTES
        || req
            .records_public
            .as_ref()
            .is_some_and(|p| p.len() > MAX_BINDING_BYTES)
    {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::TOO_LARGE,
            "a binding or records.pub is at most 16 KiB",
        ));
    }
    let device = state
        .store
        .device(&me.device_id)
        .await?
        .filter(|d| d.user == RECORDS_USER)
        .ok_or_else(|| ApiError::forbidden("only the org's archiver may do this"))?;
    let config = state.store.records_config().await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            codes::RECORDS_NOT_CONFIGURED,
            "records are not configured (run records init)",
        )
    })?;
    let expected_public = config.records_public.clone();
    let (binding, new_public) = state
        .blocking(move |_| {
            let bad = |e: vellum_records::TrustError| ApiError::bad_request(e.to_string());
            let stored = RecordsPublic::parse(&expected_public).map_err(|e| {
                tracing::error!(error = %e, "the stored records.pub does not parse");
                ApiError::internal()
            })?;
            let (public, new_public) = match req.records_public {
                None => (stored, None),
                Some(text) => {
                    let upgraded = RecordsPublic::parse(&text).map_err(bad)?;
                    // Only the upgrade of the same key and shares; never another key.
                    if upgraded == stored {
                        (stored, None)
                    } else if stored.version == 1
                        && upgraded.version == 2
                        && upgraded.same_key(&stored)
                    {
                        (upgraded, Some(text))
                    } else {
                        return Err(ApiError::forbidden(
                            "records.pub may only be upgraded from version 1 to version 2 of the same key",
                        ));
                    }
                }
            };
            let signed = SignedBinding::parse(&req.binding).map_err(bad)?;
            let statement = signed.verify(&public).map_err(|e| match e {
                vellum_records::TrustError::BadSignature
                | vellum_records::TrustError::Unbindable => ApiError::forbidden(format!(
                    "the binding is not signed by the custodians of the registered records.pub: {e}"
                )),
                e => bad(e),
            })?;
            Ok(((signed, statement), new_public))
        })
        .await?;
    let (signed, statement) = binding;
    if statement.archiver_device != device.device_id
        || statement.identity_bytes() != device.signature_key
    {
        return Err(ApiError::forbidden(
            "the binding names another device or identity key than the one calling",
        ));
    }
    state
        .store
        .set_records_binding(NewBinding {
            serial: statement.serial,
            binding: signed.to_json(),
            archiver_device: device.device_id,
            expected_public: config.records_public,
            new_public,
        })
        .await?;
    tracing::info!(
        serial = statement.serial,
        "the custodians' binding of the archiver is on file"
    );
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
