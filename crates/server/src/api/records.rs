//! What the org's archiver device does through the delivery server, the records trust every
//! other route checks against (`records.pub` and the custodians' binding on file), and what
//! devices read to monitor the archive's log.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use serde::Deserialize;
use vellum_http::{codes, ApiError, Json, Query};
use vellum_records::{ArchiverBinding, RecordsPublic, SignedBinding};
use vellum_store::{NewBinding, StoredCheckpoint};
use vellum_tlog::{verify_consistency, Checkpoint, Hash, NoteVerifier};
use vellum_wire::{
    ChainedCheckpoint, CheckpointChain, CheckpointPush, HeldUsers, PostReceipts, PutBinding,
    TransitoryChat, TransitoryChats, RECORDS_USER,
};

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

/// The archiver and log the custodians bound, as verified when the binding was stored;
/// refused until they have bound one.
pub(crate) async fn bound(state: &Arc<AppState>) -> Result<ArchiverBinding, ApiError> {
    trust(state).await?.and_then(|t| t.binding).ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            codes::RECORDS_NOT_BOUND,
            "the custodians have not bound the archiver yet",
        )
    })
}

/// The archiver hands out receipts for the senders' devices.
#[utoipa::path(post, path = "/v1/receipts", tag = "records",
    request_body = PostReceipts,
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 204, description = "Queued (undeliverable or unverifiable receipts are dropped)"),
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
    let binding = bound(&state).await?;
    // A receipt counts (for `admin status`) only if it verifies against the bound log: the
    // checks are signature work, done off the executor.
    let checked = state
        .blocking(move |_| {
            Ok(req
                .receipts
                .into_iter()
                .map(|r| {
                    let verified = (r.receipt.len() <= MAX_RECEIPT_BYTES)
                        .then(|| vellum_record::verify_receipt(&r.receipt, &binding).ok())
                        .flatten()
                        .map(|v| (v.receipt.chat_id, v.receipt.seq));
                    (r, verified)
                })
                .collect::<Vec<_>>())
        })
        .await?;
    // One receipt that cannot be delivered (too large, unverifiable, or for a device that is
    // gone) must not hold back the others: it is dropped, and the rest are queued.
    let mut queued = Vec::with_capacity(checked.len());
    let mut receipted = Vec::new();
    for (r, verified) in checked {
        let Some(entry) = verified else {
            tracing::warn!(device = %r.device_id, "dropping a receipt that does not verify");
            continue;
        };
        receipted.push(entry);
        if state.store.device(&r.device_id).await?.is_none() {
            tracing::warn!(device = %r.device_id, "dropping an undeliverable receipt");
            continue;
        }
        queued.push((r.device_id, r.receipt));
    }
    let devices: Vec<String> = queued.iter().map(|(d, _)| d.clone()).collect();
    state.store.queue_receipts(queued).await?;
    state
        .store
        .mark_receipted(receipted, state.now_millis())
        .await?;
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
    // The log key of the binding on file (verified when it was stored).
    let previous_log_key = config
        .binding
        .as_ref()
        .and_then(|(_, b)| {
            SignedBinding::parse(b)
                .and_then(|b| b.stored_statement())
                .ok()
        })
        .map(|b| b.log_key);
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
            // A replaced archiver's log (or a new origin) is another log: devices follow the
            // new key's chain from its start, and never take the old one's as a fork.
            new_log: previous_log_key.as_deref() != Some(statement.log_key.as_str()),
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

/// The most transitory chats one listing names.
const MAX_LISTED_TRANSITORY: usize = 1_000;

/// The archiver asks which chats it does not archive: transitory chats with a member, by id,
/// with their members' names and timers (the records office shows them; no title or
/// content exists here to show).
#[utoipa::path(get, path = "/v1/records/transitory-chats", tag = "records",
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 200, description = "The oldest transitory chats, at most 1,000", body = TransitoryChats),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn get_transitory_chats(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
) -> Result<Json<TransitoryChats>, ApiError> {
    require_archiver(&state, &me).await?;
    let (total, ids) = state.store.transitory_chats(MAX_LISTED_TRANSITORY).await?;
    let mut chats = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(group) = state.store.group(&id).await? else {
            continue;
        };
        let mut members = Vec::new();
        for device in state.store.group_members(&id).await? {
            if let Some(device) = state.store.device(&device).await? {
                members.push(device.user);
            }
        }
        members.sort();
        members.dedup();
        chats.push(TransitoryChat {
            id,
            members,
            expire_secs: group.timers.expire_secs,
            burn_secs: group.timers.burn_secs,
            held: group.held,
        });
    }
    Ok(Json(TransitoryChats { total, chats }))
}

/// Longest consistency proof accepted (a tree of 2^64 leaves needs fewer).
const MAX_PROOF: usize = 128;

/// What a pushed checkpoint does to the chain.
enum Judged {
    /// A consistent extension of the newest one.
    Append(StoredCheckpoint),
    /// The newest one again: renewed, with its note replaced by one carrying more
    /// cosignatures (if it does).
    Renew {
        size: u64,
        note: Option<String>,
        witnessed: bool,
    },
}

fn parse_hashes(hex_hashes: &[String]) -> Result<Vec<Hash>, ApiError> {
    hex_hashes
        .iter()
        .map(|h| hex::decode(h).ok().and_then(|b| b.try_into().ok()))
        .collect::<Option<Vec<Hash>>>()
        .ok_or_else(|| ApiError::bad_request("the proof is not a list of 32-byte hex hashes"))
}

/// Opens a note with the bound log key.
fn open(note: &str, binding: &ArchiverBinding) -> Result<Checkpoint, ApiError> {
    let text = NoteVerifier::open(note, &[binding.log_verifier()])
        .map_err(|e| ApiError::forbidden(format!("not signed by the bound log key: {e}")))?;
    let checkpoint = Checkpoint::parse(text).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if checkpoint.origin != binding.origin {
        return Err(ApiError::forbidden(format!(
            "a checkpoint of {:?}, not of the bound log",
            checkpoint.origin
        )));
    }
    Ok(checkpoint)
}

/// The checks of a pushed checkpoint against the newest one held: signature, origin,
/// no rollback, no fork, consistency.
fn judge(
    binding: &ArchiverBinding,
    head: Option<&StoredCheckpoint>,
    push: &CheckpointPush,
    now: i64,
) -> Result<Judged, ApiError> {
    if push.proof.len() > MAX_PROOF {
        return Err(ApiError::bad_request("the proof is too long"));
    }
    let proof = parse_hashes(&push.proof)?;
    let checkpoint = open(&push.note, binding)?;
    let cosigners = vellum_record::cosigners(&push.note, binding).len();
    let witnessed = cosigners >= binding.witness_quorum as usize;
    let conflict = |held: u64| {
        ApiError::new(
            StatusCode::CONFLICT,
            codes::CHECKPOINT_CONFLICT,
            format!("the server holds the checkpoint of size {held}: prove consistency from it"),
        )
    };
    let Some(head) = head else {
        if push.old_size != 0 {
            return Err(conflict(0));
        }
        return Ok(Judged::Append(StoredCheckpoint {
            size: checkpoint.size,
            note: push.note.clone(),
            previous_size: 0,
            proof: Vec::new(),
            received_at: now,
            renewed_at: now,
            witnessed_at: witnessed.then_some(now),
        }));
    };
    let held = open(&head.note, binding)?;
    if checkpoint.size < held.size {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            codes::CHECKPOINT_ROLLBACK,
            format!(
                "a checkpoint of {} leaves is older than the newest one held ({}): the log cannot go back",
                checkpoint.size, held.size
            ),
        ));
    }
    let fork = || {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            codes::CHECKPOINT_FORK,
            format!(
                "the checkpoint of {} leaves is not a consistent extension of the one of {} held: the log forked",
                checkpoint.size, held.size
            ),
        )
    };
    if checkpoint.size == held.size {
        if checkpoint.root != held.root {
            return Err(fork());
        }
        // The same tree: renewed, and its note replaced only by one with more cosignatures.
        let more = cosigners > vellum_record::cosigners(&head.note, binding).len();
        return Ok(Judged::Renew {
            size: held.size,
            note: more.then(|| push.note.clone()),
            witnessed,
        });
    }
    if push.old_size != held.size {
        return Err(conflict(held.size));
    }
    verify_consistency(
        held.size,
        checkpoint.size,
        &held.root,
        &checkpoint.root,
        &proof,
    )
    .map_err(|_| fork())?;
    Ok(Judged::Append(StoredCheckpoint {
        size: checkpoint.size,
        note: push.note.clone(),
        previous_size: held.size,
        proof: push.proof.clone(),
        received_at: now,
        renewed_at: now,
        witnessed_at: witnessed.then_some(now),
    }))
}

/// The archiver publishes its newest checkpoint with the consistency proof from the newest
/// one the server holds (or the same one again, to renew it or add cosignatures). The server
/// checks it against the bound log key and refuses a rollback or a fork.
#[utoipa::path(put, path = "/v1/records/checkpoint", tag = "records",
    request_body = CheckpointPush,
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 204, description = "Accepted: appended to the chain, or renewed"),
        (status = "4XX", description = "Refused: 400 malformed; 403 not the archiver, or not signed by the bound log key; 409 checkpoint_conflict (prove from another size), checkpoint_rollback or records_not_bound; 422 checkpoint_fork (not consistent with the newest checkpoint held)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn put_checkpoint(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Json(push): Json<CheckpointPush>,
) -> Result<StatusCode, ApiError> {
    require_archiver(&state, &me).await?;
    let binding = bound(&state).await?;
    let head = state.store.records_checkpoint_head().await?;
    let now = state.now_millis();
    let judged = state
        .blocking(move |_| judge(&binding, head.as_ref(), &push, now))
        .await?;
    let stored = match judged {
        Judged::Append(checkpoint) => {
            let size = checkpoint.size;
            tracing::info!(size, "records checkpoint accepted");
            state
                .store
                .append_records_checkpoint(checkpoint)
                .await
                .map(|_| size)
        }
        Judged::Renew {
            size,
            note,
            witnessed,
        } => state
            .store
            .renew_records_checkpoint(size, note, witnessed, now)
            .await
            .map(|_| size),
    };
    match stored {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        // Another push moved the chain between the check and the write.
        Err(vellum_store::Error::Conflict(_)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            codes::CHECKPOINT_CONFLICT,
            "the checkpoint chain moved; ask for its newest size and push again",
        )),
        Err(e) => Err(e.into()),
    }
}

/// The most checkpoints one answer holds.
const MAX_CHAIN: u32 = 256;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ChainQuery {
    /// The size of the newest checkpoint the device holds: the answer starts with the
    /// server's checkpoint of exactly that size (if it has one) and goes on from there.
    #[serde(default)]
    from: u64,
    /// At most this many checkpoints (default and maximum 256).
    #[param(minimum = 1, maximum = 256)]
    limit: Option<u32>,
}

/// The archiver's checkpoints as the server accepted them, each with its consistency proof
/// from the one before: devices check each step and keep the newest.
#[utoipa::path(get, path = "/v1/records/checkpoints", tag = "records",
    params(ChainQuery),
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 200, description = "The chain from `from`", body = CheckpointChain),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn get_checkpoints(
    State(state): St,
    Query(q): Query<ChainQuery>,
) -> Result<Json<CheckpointChain>, ApiError> {
    let limit = q.limit.unwrap_or(MAX_CHAIN).clamp(1, MAX_CHAIN);
    let chain = state
        .store
        .records_checkpoints(q.from, limit as usize)
        .await?;
    let head = state.store.records_checkpoint_head().await?;
    let more = chain.len() == limit as usize
        && chain.last().map(|c| c.size) != head.as_ref().map(|h| h.size);
    Ok(Json(CheckpointChain {
        checkpoints: chain
            .into_iter()
            .map(|c| ChainedCheckpoint {
                size: c.size,
                note: c.note,
                previous_size: c.previous_size,
                proof: c.proof,
            })
            .collect(),
        head_size: head.as_ref().map(|h| h.size),
        renewed_at: head.map(|h| h.renewed_at),
        more,
    }))
}
