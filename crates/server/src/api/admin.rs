//! `/v1/admin/*`: behind the admin token, checked once for the whole router (`api::router`).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use sha2::{Digest, Sha256};
use vellum_directory::Change;
use vellum_http::{codes, ApiError, Json, Path};
use vellum_store::DeviceChange;
use vellum_wire::{
    AdminStatus, CreateUserRequest, DeviceList, DeviceState, EnrollmentCode, OrgPolicy,
    OrgPolicyUpdate, RecordsInit, ResetScheduled, MAX_LISTED_CHATS, RECORDS_USER,
};

use super::{ErrorBody, St};
use crate::directory::Append;
use crate::state::AppState;

const MAX_NAME: usize = 64;

/// User names: 1-64 of `[a-z0-9._-]`, so they are safe in paths, logs and file names.
pub(crate) fn valid_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "user names are 1-64 characters of a-z, 0-9, '.', '_' and '-'",
        ))
    }
}

/// `records` is the org's archiver: one device, enrolled with the code of `records init` or
/// `records replace-archiver`, bound by the custodians.
fn reserved() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        codes::CONFLICT,
        "the user name records is reserved for the org's archiver: records init creates it, and it has one device (to replace a dead archiver, run `admin records replace-archiver`)",
    )
}

pub(crate) fn code_hash(code: &str) -> [u8; 32] {
    Sha256::digest(code.trim().as_bytes()).into()
}

/// A fresh enrollment code: (code, its hash, when it expires).
fn new_code(state: &AppState) -> Result<(String, [u8; 32], i64), ApiError> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|_| ApiError::internal())?;
    let code = hex::encode(raw);
    let expires_at = state.now_secs() + state.config.enrollment_code_ttl.as_secs() as i64;
    Ok((code.clone(), code_hash(&code), expires_at))
}

async fn issue_code(state: &AppState, user: &str) -> Result<EnrollmentCode, ApiError> {
    let (code, hash, expires_at) = new_code(state)?;
    state
        .store
        .add_enrollment_code(user, hash, expires_at)
        .await?;
    Ok(EnrollmentCode {
        user: user.to_owned(),
        code,
        expires_at,
    })
}

/// Creates a user and issues the enrollment code of its first device.
#[utoipa::path(post, path = "/v1/admin/users", tag = "admin",
    request_body = CreateUserRequest,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "Created; the code enrolls one device", body = EnrollmentCode),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn create_user(
    State(state): St,
    Json(req): Json<CreateUserRequest>,
) -> Result<impl IntoResponse, ApiError> {
    valid_name(&req.name)?;
    if req.name == RECORDS_USER {
        return Err(reserved());
    }
    state.store.create_user(&req.name, state.now_secs()).await?;
    Ok((
        StatusCode::CREATED,
        Json(issue_code(&state, &req.name).await?),
    ))
}

/// Issues an enrollment code for another device of an existing user.
#[utoipa::path(post, path = "/v1/admin/users/{name}/devices", tag = "admin",
    params(("name" = String, Path, description = "The user's name")),
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "The code enrolls one device", body = EnrollmentCode),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn add_device(
    State(state): St,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    if name == RECORDS_USER {
        return Err(reserved());
    }
    if !state.store.user_exists(&name).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            codes::UNKNOWN_USER,
            "no such user",
        ));
    }
    Ok((StatusCode::CREATED, Json(issue_code(&state, &name).await?)))
}

/// Changes the org's policy; fields left out are unchanged, `0` clears a maximum.
#[utoipa::path(put, path = "/v1/admin/policy", tag = "admin",
    request_body = OrgPolicyUpdate,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The policy now in force", body = OrgPolicy),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn set_policy(
    State(state): St,
    Json(req): Json<OrgPolicyUpdate>,
) -> Result<Json<OrgPolicy>, ApiError> {
    let too_long = |v: Option<u64>| v.is_some_and(|s| s > vellum_wire::timer::MAX_TIMER_SECS);
    if too_long(req.max_expire_secs) || too_long(req.max_burn_secs) {
        return Err(ApiError::bad_request("timer bounds are at most 10 years"));
    }
    let mut policy = state.store.org_policy().await?;
    // 0 clears a maximum; absent leaves it as it is.
    let apply = |current: Option<u64>, update: Option<u64>| match update {
        Some(0) => None,
        Some(secs) => Some(secs),
        None => current,
    };
    policy.max_expire_secs = apply(policy.max_expire_secs, req.max_expire_secs);
    policy.max_burn_secs = apply(policy.max_burn_secs, req.max_burn_secs);
    if let Some(allow) = req.allow_no_expiry {
        policy.allow_no_expiry = allow;
    }
    if let Some(record) = req.default_record {
        policy.default_record = record;
    }
    if let Some(allow) = req.allow_transitory {
        policy.allow_transitory = allow;
    }
    if let Some(action) = req.on_hold {
        policy.on_hold = action;
    }
    if let Some(secs) = req.receipt_alarm_secs {
        if secs == 0 || secs > vellum_wire::timer::MAX_TIMER_SECS {
            return Err(ApiError::bad_request(
                "the receipt alarm is 1 second to 10 years",
            ));
        }
        policy.receipt_alarm_secs = secs;
    }
    if let Some(secs) = req.reset_wait_secs {
        if secs == 0 || secs > vellum_wire::timer::MAX_TIMER_SECS {
            return Err(ApiError::bad_request(
                "the reset waiting period is 1 second to 10 years",
            ));
        }
        let floor = state.config.min_reset_wait_secs;
        if secs < floor {
            return Err(ApiError::bad_request(format!(
                "the reset waiting period cannot be shorter than the server's --min-reset-wait ({floor} s), which devices pinned"
            )));
        }
        policy.reset_wait_secs = secs;
    }
    if let Some(allow) = req.allow_read_receipts {
        policy.allow_read_receipts = allow;
    }
    for (name, update, current) in [
        (
            "largest file",
            req.max_file_bytes,
            &mut policy.max_file_bytes,
        ),
        (
            "user quota",
            req.user_quota_bytes,
            &mut policy.user_quota_bytes,
        ),
    ] {
        if let Some(bytes) = update {
            if bytes == 0 || bytes > i64::MAX as u64 {
                return Err(ApiError::bad_request(format!(
                    "the {name} is 1 byte to 2^63-1 bytes"
                )));
            }
            *current = bytes;
        }
    }
    if let Some(allow) = req.files_in_transitory {
        policy.files_in_transitory = allow;
    }
    if let Some(allow) = req.files_in_record {
        policy.files_in_record = allow;
    }
    state.store.set_org_policy(policy.clone()).await?;
    Ok(Json(state.store.org_policy().await?))
}

/// Registers `records.pub` and issues the archiver's enrollment code.
#[utoipa::path(post, path = "/v1/admin/records", tag = "admin",
    request_body = RecordsInit,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "The archiver's enrollment code", body = EnrollmentCode),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn records_init(
    State(state): St,
    Json(req): Json<RecordsInit>,
) -> Result<impl IntoResponse, ApiError> {
    vellum_records::RecordsPublic::parse(&req.records_public)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (code, hash, expires_at) = new_code(&state)?;
    state
        .store
        .init_records(&req.records_public, hash, expires_at, state.now_secs())
        .await?;
    Ok(archiver_code(code, expires_at))
}

/// `201` with the enrollment code of the org's (next) archiver.
fn archiver_code(code: String, expires_at: i64) -> (StatusCode, Json<EnrollmentCode>) {
    (
        StatusCode::CREATED,
        Json(EnrollmentCode {
            user: RECORDS_USER.into(),
            code,
            expires_at,
        }),
    )
}

/// Replaces a dead archiver: revokes its device (it can no longer sign in, be claimed or hold
/// back purges) and issues the enrollment code of the new one. The new archiver serves
/// record chats only once k custodians have unsealed it, which binds it (the next serial);
/// devices then show the change in every record chat.
#[utoipa::path(post, path = "/v1/admin/records/replace-archiver", tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "The new archiver's enrollment code", body = EnrollmentCode),
        (status = "4XX", description = "Refused (see code; 404: records are not configured)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn replace_archiver(State(state): St) -> Result<impl IntoResponse, ApiError> {
    let (code, hash, expires_at) = new_code(&state)?;
    let revoked = state
        .store
        .replace_archiver(hash, expires_at, state.now_secs())
        .await?;
    tracing::info!(revoked = ?revoked, "archiver device revoked; a new enrollment code issued");
    Ok(archiver_code(code, expires_at))
}

/// What an administrator should know at a glance.
#[utoipa::path(get, path = "/v1/admin/status", tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Status", body = AdminStatus),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn status(State(state): St) -> Result<Json<AdminStatus>, ApiError> {
    Ok(Json(status_of(&state).await?))
}

async fn status_of(state: &std::sync::Arc<AppState>) -> Result<AdminStatus, ApiError> {
    let trust = super::records::trust(state).await?;
    let records_configured = trust.is_some();
    let (archiver_backlog, oldest) = state.store.archiver_backlog().await?;
    let now = state.now_millis();
    let archiver_lag_ms = oldest.map(|t| (now - t).max(0));
    let mut warnings = Vec::new();
    match &trust {
        None => warnings.push("records are not configured: every chat is transitory and nothing is archived (run `records init`)".into()),
        Some(t) if t.archiver_device.is_none() => warnings.push(
            "records are configured but the archiver has not enrolled yet (start it with the code records init or replace-archiver printed)".into(),
        ),
        Some(t) => {
            if let Err(step) = t.bound_archiver() {
                warnings.push(format!("record chats cannot be created: {step}"));
            }
        }
    }
    if archiver_lag_ms.is_some_and(|lag| lag > 60_000) {
        warnings.push(format!(
            "the archiver is behind by {archiver_backlog} entries"
        ));
    }
    // The store knows each chat's class from the public handshake.
    let org = state.store.org_policy().await?;
    let (noncompliant_chat_count, noncompliant_chats) = if org.requires_records() {
        state.store.transitory_chats(MAX_LISTED_CHATS).await?
    } else {
        (0, Vec::new())
    };
    if noncompliant_chat_count > 0 {
        warnings.push(format!(
            "{noncompliant_chat_count} chats are still transitory although the organisation keeps every chat as records: \
             each converts at its next commit, and takes no message until then"
        ));
    }
    let alarm_ms = (org.receipt_alarm_secs as i64).saturating_mul(1000);
    let (unreceipted_messages, oldest_unreceipted) = match org.archiver_device {
        Some(_) => state.store.unreceipted(now - alarm_ms).await?,
        None => (0, None),
    };
    let ago = |since: i64| vellum_wire::timer::describe(((now - since).max(0) / 1000) as u64);
    if let Some(oldest) = oldest_unreceipted {
        warnings.push(format!(
            "{unreceipted_messages} record message(s) have had no archive receipt for more than {} (the oldest for {}): the archiver may have stopped archiving or publishing",
            vellum_wire::timer::describe(org.receipt_alarm_secs),
            ago(oldest)
        ));
    }
    let head = state.store.records_checkpoint_head().await?;
    let mut checkpoint_cosigners = None;
    let binding = match head {
        Some(_) => super::records::bound(state).await.ok(),
        None => None,
    };
    if let (Some(head), Some(binding)) = (&head, binding) {
        if now - head.renewed_at > alarm_ms {
            warnings.push(format!(
                "the archiver's newest checkpoint ({} leaves) was last published {} ago: the archiver may have stopped",
                head.size,
                ago(head.renewed_at)
            ));
        }
        let quorum = binding.witness_quorum as usize;
        let note = head.note.clone();
        let cosigners = state
            .blocking(move |_| Ok(vellum_record::cosigners(&note, &binding).len()))
            .await?;
        checkpoint_cosigners = Some(cosigners as u64);
        // Witnessing lags a checkpoint by a round: an alarm only once the log has gone
        // without a witnessed checkpoint for the alarm time.
        if cosigners < quorum {
            let since = match state.store.records_checkpoint_witnessed().await? {
                Some(w) => w.witnessed_at.unwrap_or(w.received_at),
                None => state
                    .store
                    .records_checkpoints(0, 1)
                    .await?
                    .first()
                    .map_or(head.received_at, |c| c.received_at),
            };
            if now - since > alarm_ms {
                warnings.push(format!(
                    "the archiver's newest checkpoint ({} leaves) has {cosigners} of the {quorum} witness cosignatures the custodians require, and none has had them for {}",
                    head.size,
                    ago(since)
                ));
            }
        }
    }
    let (archiver_device, archiver_binding_serial) = match trust {
        Some(t) => (t.archiver_device, t.binding.map(|b| b.serial)),
        None => (None, None),
    };
    Ok(AdminStatus {
        records_configured,
        archiver_device,
        archiver_binding_serial,
        archiver_backlog,
        archiver_lag_ms,
        noncompliant_chats,
        noncompliant_chat_count,
        checkpoint_size: head.as_ref().map(|h| h.size),
        checkpoint_age_ms: head.as_ref().map(|h| (now - h.renewed_at).max(0)),
        checkpoint_cosigners,
        unreceipted_messages,
        warnings,
    })
}

/// Prometheus text.
#[utoipa::path(get, path = "/v1/admin/metrics", tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Prometheus exposition format", body = String,
            content_type = "text/plain"),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn metrics(State(state): St) -> Result<impl IntoResponse, ApiError> {
    let status = status_of(&state).await?;
    let body = format!(
        "# HELP vellum_archiver_backlog Record-chat entries not yet acknowledged by the archiver.\n\
         # TYPE vellum_archiver_backlog gauge\n\
         vellum_archiver_backlog {}\n\
         # HELP vellum_archiver_lag_seconds Age of the oldest entry the archiver has not acknowledged.\n\
         # TYPE vellum_archiver_lag_seconds gauge\n\
         vellum_archiver_lag_seconds {}\n\
         # HELP vellum_records_configured Whether records init has run.\n\
         # TYPE vellum_records_configured gauge\n\
         vellum_records_configured {}\n\
         # HELP vellum_chats_not_compliant Transitory chats while the org keeps every chat as records.\n\
         # TYPE vellum_chats_not_compliant gauge\n\
         vellum_chats_not_compliant {}\n\
         # HELP vellum_records_unreceipted Record messages without a receipt past the alarm time.\n\
         # TYPE vellum_records_unreceipted gauge\n\
         vellum_records_unreceipted {}\n\
         # HELP vellum_records_checkpoint_age_seconds Since the archiver last published its newest checkpoint.\n\
         # TYPE vellum_records_checkpoint_age_seconds gauge\n\
         vellum_records_checkpoint_age_seconds {}\n",
        status.archiver_backlog,
        status.archiver_lag_ms.unwrap_or(0) as f64 / 1000.0,
        status.records_configured as u8,
        status.noncompliant_chat_count,
        status.unreceipted_messages,
        status.checkpoint_age_ms.unwrap_or(0) as f64 / 1000.0
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body))
}

/// The key directory's operations refuse `records`: its archiver is bound by the custodians
/// (replace it with `admin records replace-archiver`).
fn ordinary_user(name: &str) -> Result<(), ApiError> {
    if name == RECORDS_USER {
        return Err(ApiError::bad_request(
            "the user records is the org's archiver, bound by the custodians and not in the key directory: replace it with `admin records replace-archiver`",
        ));
    }
    Ok(())
}

async fn existing_user(state: &AppState, name: &str) -> Result<(), ApiError> {
    ordinary_user(name)?;
    if !state.store.user_exists(name).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            codes::UNKNOWN_USER,
            "no such user",
        ));
    }
    Ok(())
}

/// Every device of a user, revoked ones too, oldest first, with its state.
#[utoipa::path(get, path = "/v1/admin/users/{name}/devices", tag = "admin",
    params(("name" = String, Path, description = "The user's name")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The user's devices", body = DeviceList),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn list_devices(
    State(state): St,
    Path(name): Path<String>,
) -> Result<Json<DeviceList>, ApiError> {
    existing_user(&state, &name).await?;
    let devices = state.store.user_device_records(&name).await?;
    Ok(Json(DeviceList {
        devices: devices
            .into_iter()
            .map(super::approvals::device_info)
            .collect(),
    }))
}

/// Revokes a device: it can no longer sign in, be claimed or be added, and its next request
/// tells it to wipe itself. A device the key directory lists is revoked there, publicly
/// (`revoked_by_admin`); one waiting for approval was never listed.
#[utoipa::path(post, path = "/v1/admin/users/{name}/devices/{device_id}/revoke", tag = "admin",
    params(
        ("name" = String, Path, description = "The user's name"),
        ("device_id" = String, Path, description = "The device to revoke"),
    ),
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "Revoked (or it was already)"),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn revoke_device(
    State(state): St,
    Path((name, device_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    existing_user(&state, &name).await?;
    let record = state
        .store
        .device_record(&device_id)
        .await?
        .filter(|r| r.device.user == name)
        .ok_or_else(|| ApiError::not_found(format!("{name} has no device {device_id:?}")))?;
    if record.state == DeviceState::Revoked {
        return Ok(StatusCode::NO_CONTENT);
    }
    let directory = state.directory().await?;
    let listed = |d: &vellum_directory::DirectoryState| {
        d.user(&name)
            .and_then(|u| u.devices.get(&device_id))
            .is_some_and(|d| d.status != vellum_directory::DeviceStatus::Revoked)
    };
    let revoke = || {
        Ok(vec![Append {
            user: name.clone(),
            change: Change::RevokedByAdmin {
                device_id: device_id.clone(),
            },
            devices: Some(DeviceChange::Revoke {
                device_id: device_id.clone(),
            }),
        }])
    };
    let now = state.now_secs();
    let appended = directory
        .append(&state.store, now, |d| match listed(d) {
            true => revoke(),
            false => Ok(Vec::new()),
        })
        .await?;
    if appended.is_none() {
        // Not listed (waiting for approval, or a first device that has not posted its
        // identity): revoked under the directory's lock, so it cannot get listed meanwhile.
        let (store, device_id) = (&state.store, &device_id);
        directory
            .exclusive(|d| {
                let listed_now = listed(d);
                async move {
                    if listed_now {
                        return Err(ApiError::new(
                            StatusCode::CONFLICT,
                            codes::CONFLICT,
                            "the device was just approved; revoke it again",
                        ));
                    }
                    Ok::<_, ApiError>(store.revoke_device(device_id, now).await?)
                }
            })
            .await?;
    }
    tracing::info!(user = %name, device = %device_id, "device revoked by an administrator");
    Ok(StatusCode::NO_CONTENT)
}

/// Resets a user's identity (a user who lost every device): public in the key directory at
/// once, it takes effect after the policy's waiting period unless a device of the user
/// vetoes it; then every device of the user is revoked, and the next enrolled one starts a
/// new identity (its contacts are told).
#[utoipa::path(post, path = "/v1/admin/users/{name}/reset", tag = "admin",
    params(("name" = String, Path, description = "The user's name")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Scheduled", body = ResetScheduled),
        (status = 409, description = "A reset of this user is pending already", body = ErrorBody),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn reset_user(
    State(state): St,
    Path(name): Path<String>,
) -> Result<Json<ResetScheduled>, ApiError> {
    existing_user(&state, &name).await?;
    let wait = state
        .store
        .org_policy()
        .await?
        .reset_wait_secs
        .max(state.config.min_reset_wait_secs);
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|_| ApiError::internal())?;
    let request_id = hex::encode(raw);
    let now = state.now_secs();
    let effective_at = now.saturating_add(wait as i64);
    state
        .directory()
        .await?
        .append(&state.store, now, |d| {
            if let Some(pending) = d.user(&name).and_then(|u| u.pending_reset.as_ref()) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    codes::CONFLICT,
                    format!(
                        "a reset of {name} is pending already (it takes effect at {})",
                        crate::api::rfc3339_secs(pending.effective_at)
                    ),
                ));
            }
            Ok(vec![Append {
                user: name.clone(),
                change: Change::ResetRequested {
                    request_id: request_id.clone(),
                    effective_at,
                },
                devices: None,
            }])
        })
        .await?;
    tracing::info!(user = %name, effective_at, "identity reset requested by an administrator");
    Ok(Json(ResetScheduled {
        user: name,
        request_id,
        effective_at,
    }))
}
