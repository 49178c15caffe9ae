use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use vellum_store::{ChatTimers, CommitAppend, Device, MessageAppend, NewGroup};
use vellum_wire::*;

use crate::auth::{require_admin, AuthedDevice};
use crate::state::{now_millis, now_secs, AppState};
use crate::ApiError;

type St = State<Arc<AppState>>;
type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

fn body<T>(b: JsonBody<T>) -> Result<T, ApiError> {
    Ok(b?.0)
}

const MAX_NAME: usize = 64;

/// User names: 1-64 of `[a-z0-9._-]`, so they are safe in paths, logs and file names.
fn valid_name(name: &str) -> Result<(), ApiError> {
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

fn code_hash(code: &str) -> [u8; 32] {
    Sha256::digest(code.trim().as_bytes()).into()
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], crate::OPENAPI)
}

async fn issue_code(state: &AppState, user: &str) -> Result<EnrollmentCode, ApiError> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|_| ApiError::internal())?;
    let code = hex::encode(raw);
    let expires_at = now_secs() + state.config.enrollment_code_ttl.as_secs() as i64;
    state
        .store
        .add_enrollment_code(user, code_hash(&code), expires_at)
        .await?;
    Ok(EnrollmentCode {
        user: user.to_owned(),
        code,
        expires_at,
    })
}

pub async fn admin_create_user(
    State(state): St,
    headers: HeaderMap,
    req: JsonBody<CreateUserRequest>,
) -> Result<impl IntoResponse, ApiError> {
    require_admin(&state, &headers)?;
    let req = body(req)?;
    valid_name(&req.name)?;
    state.store.create_user(&req.name, now_secs()).await?;
    Ok((
        StatusCode::CREATED,
        Json(issue_code(&state, &req.name).await?),
    ))
}

pub async fn admin_add_device(
    State(state): St,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    require_admin(&state, &headers)?;
    if !state.store.user_exists(&name).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            codes::UNKNOWN_USER,
            "no such user",
        ));
    }
    Ok((StatusCode::CREATED, Json(issue_code(&state, &name).await?)))
}

pub async fn enroll(
    State(state): St,
    req: JsonBody<EnrollRequest>,
) -> Result<Json<EnrollResponse>, ApiError> {
    let req = body(req)?;
    if req.signature_key.len() != 32 {
        return Err(ApiError::bad_request(
            "signature_key must be a 32-byte Ed25519 public key",
        ));
    }
    let hash = code_hash(&req.code);
    let now = now_secs();
    let user = state.store.enrollment_code_user(hash, now).await?;
    if user != req.user {
        return Err(vellum_store::Error::InvalidCode.into());
    }
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|_| ApiError::internal())?;
    let device_id = hex::encode(raw);
    let certificate = state.org.issue(&user, &device_id, &req.signature_key);
    state
        .store
        .enroll_device(
            hash,
            now,
            Device {
                device_id: device_id.clone(),
                user,
                signature_key: req.signature_key.0,
            },
        )
        .await?;
    Ok(Json(EnrollResponse {
        device_id,
        credential: certificate.to_bytes().into(),
        org_key: state.org.public_key().to_bytes().to_vec().into(),
    }))
}

const MAX_KEY_PACKAGES_PER_UPLOAD: usize = 200;

pub async fn upload_key_packages(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    req: JsonBody<UploadKeyPackages>,
) -> Result<StatusCode, ApiError> {
    let req = body(req)?;
    if req.key_packages.len() > MAX_KEY_PACKAGES_PER_UPLOAD {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_KEY_PACKAGES_PER_UPLOAD} key packages per upload"
        )));
    }
    // Every key package must be this device's own, valid under the org.
    let check = |bytes: &[u8]| -> Result<(), ApiError> {
        let cert = state.tracker.key_package_owner(bytes)?;
        if cert.device_id != me.device_id {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                codes::FORBIDDEN,
                "key package belongs to another device",
            ));
        }
        Ok(())
    };
    for kp in req.key_packages.iter().chain(req.last_resort.iter()) {
        check(kp)?;
    }
    let single = req.key_packages.into_iter().map(B64::into_inner).collect();
    state
        .store
        .add_key_packages(&me.device_id, single, req.last_resort.map(B64::into_inner))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn key_package_count(
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

pub async fn claim_key_packages(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    req: JsonBody<ClaimKeyPackages>,
) -> Result<Json<ClaimedKeyPackages>, ApiError> {
    let req = body(req)?;
    if req.users.len() > MAX_CLAIM_USERS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_CLAIM_USERS} users per claim"
        )));
    }
    // Check everything first, so a failed claim consumes no key package.
    let mut targets = Vec::new();
    for user in &req.users {
        let devices = state.store.user_devices(user).await?;
        if devices.is_empty() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                codes::UNKNOWN_USER,
                format!("no enrolled user {user:?}"),
            ));
        }
        for device in devices.into_iter().filter(|d| d.device_id != me.device_id) {
            let (single, last_resort) = state.store.key_package_count(&device.device_id).await?;
            if single == 0 && !last_resort {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    codes::NO_KEY_PACKAGE,
                    format!("a device of {user:?} has no key package"),
                ));
            }
            targets.push(device);
        }
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

pub async fn create_group(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    req: JsonBody<CreateGroup>,
) -> Result<impl IntoResponse, ApiError> {
    let req = body(req)?;
    let tracked = state.tracker.observe(&req.group_info, &me.device_id)?;
    let policy = tracked.policy()?;
    let org = state.store.org_policy().await?;
    policy.check(&org)?;
    check_class(&org, None, tracked.archiver()?.as_deref())?;
    let group_id = vellum_mls::group_id_hex(tracked.group_id());
    let epoch = tracked.epoch();
    state
        .store
        .create_group(NewGroup {
            group_id: group_id.clone(),
            epoch,
            state: tracked.state()?,
            timers: timers(policy),
            creator_device: me.device_id,
            created_at: now_secs(),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(GroupCreated { group_id, epoch })))
}

/// The rules on chat classes: a record chat names the org's archiver; a chat may be (or
/// become) transitory only where the org allows it once records are configured.
fn check_class(
    org: &OrgPolicy,
    before: Option<Option<&str>>,
    after: Option<&str>,
) -> Result<(), ApiError> {
    let violation = |m: &str| Err(ApiError::from(vellum_mls::PolicyViolation(m.into())));
    if matches!(before, Some(Some(_))) && after.is_none() {
        // Otherwise the same commit could drop the archiver: a record chat stays one.
        return violation("a record chat cannot become transitory");
    }
    match (after, org.archiver_device.as_deref()) {
        (Some(_), None) => violation("records are not configured for this organisation"),
        (Some(named), Some(archiver)) if named != archiver => {
            violation("a record chat must name the org's archiver")
        }
        (None, Some(_)) if !org.allow_transitory && before != Some(None) => {
            violation("this organisation keeps every chat as records")
        }
        _ => Ok(()),
    }
}

fn timers(policy: vellum_mls::ChatPolicy) -> ChatTimers {
    ChatTimers {
        expire_secs: policy.expire_secs,
        burn_secs: policy.burn_secs,
    }
}

fn unknown_chat() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, codes::UNKNOWN_CHAT, "no such chat")
}

fn not_member() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        codes::NOT_MEMBER,
        "device is not a member of this chat",
    )
}

pub async fn post_commit(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Path(group_id): Path<String>,
    req: JsonBody<PostCommit>,
) -> Result<Json<Accepted>, ApiError> {
    let req = body(req)?;
    let commit = vellum_mls::parse_message(&req.commit)?;
    if let Some(welcome) = &req.welcome {
        let welcome = vellum_mls::parse_message(welcome)?;
        if welcome.wire_format() != vellum_mls::mls_rs::WireFormat::Welcome {
            return Err(ApiError::bad_request("welcome is not an MLS Welcome"));
        }
    }
    // Only existing groups get a lock: unknown ids must not grow the lock table.
    state
        .store
        .group(&group_id)
        .await?
        .ok_or_else(unknown_chat)?;
    let lock = state.group_lock(&group_id);
    let _ordered = lock.lock().await;
    let group = state
        .store
        .group(&group_id)
        .await?
        .ok_or_else(unknown_chat)?;
    if !state.store.is_member(&group_id, &me.device_id).await? {
        return Err(not_member());
    }
    let received_at = now_millis();
    let commit_epoch = commit
        .epoch()
        .ok_or_else(|| ApiError::bad_request("not a group message"))?;
    if commit_epoch != group.epoch {
        // A retry of the commit that already won its epoch gets its acknowledgement again.
        if let Some(seq) = state
            .store
            .find_commit(&group_id, commit_epoch, &me.device_id, &req.commit)
            .await?
        {
            return Ok(Json(Accepted {
                seq,
                epoch: commit_epoch + 1,
            }));
        }
    }
    let mut tracked = state.tracker.load(&group.state)?;
    let policy_before = tracked.policy()?;
    let archiver_before = tracked.archiver()?;
    let outcome = tracked.apply_commit(commit, &me.device_id)?;
    let policy = tracked.policy()?;
    let org = state.store.org_policy().await?;
    if policy != policy_before {
        policy.check(&org)?;
    }
    let archiver = tracked.archiver()?;
    check_class(&org, Some(archiver_before.as_deref()), archiver.as_deref())?;
    // A record chat always contains the archiver, from its first commit on.
    if let Some(archiver) = &archiver {
        if !tracked.member_devices()?.contains(archiver) {
            return Err(ApiError::from(vellum_mls::PolicyViolation(
                "a record chat must keep the org's archiver as a member".into(),
            )));
        }
    }
    if !outcome.added.is_empty() && req.welcome.is_none() {
        return Err(ApiError::bad_request(
            "a commit that adds members needs their Welcome",
        ));
    }
    let appended = state
        .store
        .append_commit(CommitAppend {
            group_id: group_id.clone(),
            expected_epoch: group.epoch,
            new_epoch: outcome.new_epoch,
            state: tracked.state()?,
            timers: timers(policy),
            sender_device: me.device_id.clone(),
            payload: req.commit.0,
            received_at,
            added: outcome.added.clone(),
            removed: outcome.removed.clone(),
            welcome: req.welcome.map(B64::into_inner),
        })
        .await?;
    let mut wake = state.store.group_members(&group_id).await?;
    wake.extend(outcome.removed);
    state.notifier.wake(&wake);
    Ok(Json(Accepted {
        seq: appended.seq,
        epoch: appended.epoch,
    }))
}

pub async fn post_message(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Path(group_id): Path<String>,
    req: JsonBody<PostMessage>,
) -> Result<Json<Accepted>, ApiError> {
    let req = body(req)?;
    if req.client_msg_id.is_empty() || req.client_msg_id.len() > 64 {
        return Err(ApiError::bad_request(
            "client_msg_id must be 1 to 64 characters",
        ));
    }
    if req.message.len() > state.config.max_message_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::TOO_LARGE,
            format!(
                "messages are limited to {} bytes",
                state.config.max_message_bytes
            ),
        ));
    }
    let message = vellum_mls::parse_message(&req.message)?;
    if message.wire_format() != vellum_mls::mls_rs::WireFormat::PrivateMessage {
        return Err(ApiError::bad_request(
            "application messages must be MLS PrivateMessages",
        ));
    }
    let group_id_bytes = hex::decode(&group_id).map_err(|_| unknown_chat())?;
    if message.group_id() != Some(group_id_bytes.as_slice()) {
        return Err(ApiError::bad_request("message belongs to another group"));
    }
    let epoch = message
        .epoch()
        .ok_or_else(|| ApiError::bad_request("not a group message"))?;
    let group = state
        .store
        .group(&group_id)
        .await?
        .ok_or_else(unknown_chat)?;
    if req.expires_at.is_some_and(|t| t <= 0) {
        return Err(ApiError::bad_request(
            "expires_at must be a positive Unix time in milliseconds",
        ));
    }
    // The server only ever shortens a message's life: to the chat's timer and the org's maximum.
    let received_at = now_millis();
    let limit = |secs: Option<u64>| {
        secs.map(|s| received_at.saturating_add((s as i64).saturating_mul(1000)))
    };
    let org = state.store.org_policy().await?;
    let expires_at = [
        req.expires_at,
        limit(group.timers.expire_secs),
        limit(org.max_expire_secs),
    ]
    .into_iter()
    .flatten()
    .min();
    let appended = state
        .store
        .append_message(MessageAppend {
            group_id: group_id.clone(),
            epoch,
            sender_device: me.device_id,
            client_msg_id: req.client_msg_id,
            payload: req.message.0,
            received_at,
            expires_at,
        })
        .await
        .map_err(|e| match e {
            vellum_store::Error::NotMember => not_member(),
            other => other.into(),
        })?;
    if !appended.duplicate {
        state
            .notifier
            .wake(&state.store.group_members(&group_id).await?);
    }
    Ok(Json(Accepted {
        seq: appended.seq,
        epoch: appended.epoch,
    }))
}

#[derive(Deserialize)]
pub struct SyncQuery {
    limit: Option<usize>,
}

pub async fn sync(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Query(q): Query<SyncQuery>,
) -> Result<Json<SyncResponse>, ApiError> {
    let limit = q
        .limit
        .unwrap_or(state.config.sync_limit)
        .clamp(1, state.config.sync_limit);
    let pending = state.store.pending(&me.device_id, limit).await?;
    let receipts = state.store.pending_receipts(&me.device_id, limit).await?;
    let instance_id = state.store.instance_id().await?;
    let heads: std::collections::HashMap<_, _> = pending.heads.into_iter().collect();
    Ok(Json(SyncResponse {
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

pub async fn ack(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    req: JsonBody<AckRequest>,
) -> Result<StatusCode, ApiError> {
    let req = body(req)?;
    let cursors: Vec<(String, u64)> = req
        .cursors
        .into_iter()
        .map(|c| (c.group_id, c.seq))
        .collect();
    state
        .store
        .ack(&me.device_id, &req.welcomes, &cursors)
        .await?;
    state
        .store
        .ack_receipts(&me.device_id, &req.receipts)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn require_archiver(state: &AppState, me: &AuthedDevice) -> Result<(), ApiError> {
    let archiver = state.store.org_policy().await?.archiver_device;
    if archiver.as_deref() != Some(me.device_id.as_str()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            codes::FORBIDDEN,
            "only the org's archiver may do this",
        ));
    }
    Ok(())
}

const MAX_RECEIPTS_PER_POST: usize = 1000;
const MAX_RECEIPT_BYTES: usize = 64 * 1024;

/// `POST /v1/receipts`: the archiver hands out receipts for the senders' devices.
pub async fn post_receipts(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    req: JsonBody<PostReceipts>,
) -> Result<StatusCode, ApiError> {
    require_archiver(&state, &me).await?;
    let req = body(req)?;
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

/// `PUT /v1/records/log-key`: the archiver publishes its checkpoint key for receipts.
pub async fn put_log_key(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    req: JsonBody<LogKey>,
) -> Result<StatusCode, ApiError> {
    require_archiver(&state, &me).await?;
    let req = body(req)?;
    vellum_tlog::NoteVerifier::parse(&req.verifier_key)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    state.store.set_records_log_key(&req.verifier_key).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete_message(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Path((group_id, seq)): Path<(String, u64)>,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .group(&group_id)
        .await?
        .ok_or_else(unknown_chat)?;
    state
        .store
        .delete_message(&group_id, seq, &me.device_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn get_policy(State(state): St) -> Result<Json<OrgPolicy>, ApiError> {
    Ok(Json(state.store.org_policy().await?))
}

pub async fn admin_set_policy(
    State(state): St,
    headers: HeaderMap,
    req: JsonBody<OrgPolicyUpdate>,
) -> Result<Json<OrgPolicy>, ApiError> {
    require_admin(&state, &headers)?;
    let req = body(req)?;
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
    state.store.set_org_policy(policy.clone()).await?;
    Ok(Json(state.store.org_policy().await?))
}

/// `POST /v1/admin/records`: registers `records.pub` and issues the archiver's enrollment code.
pub async fn admin_records_init(
    State(state): St,
    headers: HeaderMap,
    req: JsonBody<RecordsInit>,
) -> Result<impl IntoResponse, ApiError> {
    require_admin(&state, &headers)?;
    let req = body(req)?;
    vellum_records::RecordsPublic::parse(&req.records_public)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if state.store.records_public().await?.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            codes::CONFLICT,
            "records are already initialised",
        ));
    }
    if !state.store.user_exists(RECORDS_USER).await? {
        state.store.create_user(RECORDS_USER, now_secs()).await?;
    }
    let code = issue_code(&state, RECORDS_USER).await?;
    state.store.set_records_public(&req.records_public).await?;
    Ok((StatusCode::CREATED, Json(code)))
}

/// `GET /v1/admin/status`.
pub async fn admin_status(
    State(state): St,
    headers: HeaderMap,
) -> Result<Json<AdminStatus>, ApiError> {
    require_admin(&state, &headers)?;
    Ok(Json(status_of(&state).await?))
}

async fn status_of(state: &AppState) -> Result<AdminStatus, ApiError> {
    let org = state.store.org_policy().await?;
    let records_configured = state.store.records_public().await?.is_some();
    let (archiver_backlog, oldest) = state.store.archiver_backlog().await?;
    let archiver_lag_ms = oldest.map(|t| (now_millis() - t).max(0));
    let mut warnings = Vec::new();
    if !records_configured {
        warnings.push("records are not configured: every chat is transitory and nothing is archived (run `records init`)".into());
    } else if org.archiver_device.is_none() {
        warnings.push("records are configured but the archiver has not enrolled yet".into());
    }
    if archiver_lag_ms.is_some_and(|lag| lag > 60_000) {
        warnings.push(format!(
            "the archiver is behind by {archiver_backlog} entries"
        ));
    }
    Ok(AdminStatus {
        records_configured,
        archiver_device: org.archiver_device,
        archiver_backlog,
        archiver_lag_ms,
        warnings,
    })
}

/// `GET /v1/admin/metrics`: Prometheus text, behind the admin token like every admin call.
pub async fn admin_metrics(
    State(state): St,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    require_admin(&state, &headers)?;
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
         vellum_records_configured {}\n",
        status.archiver_backlog,
        status.archiver_lag_ms.unwrap_or(0) as f64 / 1000.0,
        status.records_configured as u8
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body))
}
