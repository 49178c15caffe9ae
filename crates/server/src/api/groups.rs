use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Extension;
use vellum_http::{codes, ApiError, Json, Path};
use vellum_store::{ChatTimers, CommitAppend, MessageAppend, NewGroup, ProposalAppend};
use vellum_wire::{
    Accepted, CreateGroup, DeviceState, GroupCreated, GroupCursors, HoldAction, LeaveChat,
    OrgPolicy, PostCommit, PostMessage, B64, RECORDS_USER,
};

use super::records::Trust;
use super::{ErrorBody, St};
use crate::auth::AuthedDevice;

/// Registers a new group by its epoch-0 GroupInfo; the creator must be its only member.
#[utoipa::path(post, path = "/v1/groups", tag = "groups",
    request_body = CreateGroup,
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 201, description = "Created", body = GroupCreated),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn create(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Json(req): Json<CreateGroup>,
) -> Result<impl IntoResponse, ApiError> {
    let creator = me.device_id.clone();
    let (tracked, policy, archiver, snapshot) = state
        .blocking(move |state| {
            let tracked = state.tracker.observe(&req.group_info, &creator)?;
            let policy = tracked.policy()?;
            let archiver = tracked.archiver()?;
            let snapshot = tracked.state()?;
            Ok((tracked, policy, archiver, snapshot))
        })
        .await?;
    let org = state.store.org_policy().await?;
    policy.check(&org)?;
    let trust = super::records::trust(&state).await?;
    check_class(&org, trust.as_ref(), None, archiver.as_deref(), false)?;
    let group_id = vellum_mls::group_id_hex(tracked.group_id());
    let epoch = tracked.epoch();
    state
        .store
        .create_group(NewGroup {
            group_id: group_id.clone(),
            epoch,
            state: snapshot,
            timers: timers(policy),
            record: archiver.is_some(),
            creator_device: me.device_id,
            created_at: state.now_secs(),
        })
        .await?;
    // A new group's state is at version 0 (no commit or leave yet).
    state.cache_group(group_id.clone(), 0, tracked);
    Ok((StatusCode::CREATED, Json(GroupCreated { group_id, epoch })))
}

/// The rules on chat classes: a new record chat names the archiver the custodians bound; a
/// record chat keeps naming its archiver (a replaced one too, until a member switches it to
/// the bound one); a chat may be (or become) transitory only where the org allows it once
/// records are configured; a transitory chat becomes a record chat, never the reverse. An
/// existing transitory chat that `must_convert` (see [`must_convert`]) converts at its next
/// commit: any other commit is refused with `record_required`.
fn check_class(
    org: &OrgPolicy,
    trust: Option<&Trust>,
    before: Option<Option<&str>>,
    after: Option<&str>,
    must_convert: bool,
) -> Result<(), ApiError> {
    let violation = |m: &str| Err(ApiError::from(vellum_mls::PolicyViolation(m.into())));
    if matches!(before, Some(Some(_))) && after.is_none() {
        // Otherwise the same commit could drop the archiver: a record chat stays one.
        return violation("a record chat cannot become transitory");
    }
    match (after, trust) {
        (Some(_), None) => violation("records are not configured for this organisation"),
        (Some(named), Some(_)) if before == Some(Some(named)) => Ok(()),
        (Some(named), Some(trust)) => match trust.bound_archiver() {
            Err(step) => violation(&step),
            Ok(bound) if named != bound => {
                violation("a record chat must name the archiver the custodians bound")
            }
            Ok(_) => Ok(()),
        },
        (None, Some(_)) if before == Some(None) && must_convert => Err(record_required()),
        (None, Some(_)) if !org.allow_transitory && before != Some(None) => {
            violation("this organisation keeps every chat as records")
        }
        _ => Ok(()),
    }
}

/// Whether an existing transitory chat must become a record chat before anything else
/// happens in it: the org requires records, or a member is under a legal hold where the
/// org's policy makes holds convert chats.
fn must_convert(org: &OrgPolicy, held: bool) -> bool {
    org.requires_records()
        || (org.archiver_device.is_some() && held && org.on_hold == HoldAction::Convert)
}

fn archiver_replaced() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        codes::ARCHIVER_REPLACED,
        "the org's archiver was replaced and is not a member of this record chat yet: once k \
         custodians have unsealed (and so bound) the new archiver, a member's device switches \
         the chat to it; nothing is taken here until then, so nothing escapes the archive",
    )
}

fn record_required() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        codes::RECORD_REQUIRED,
        "this organisation keeps this chat as records: a member must first commit its \
         conversion (the record-chat extension and the org's archiver as a member)",
    )
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

/// Takes the group's lock (commits and leaves are applied one at a time, in log order) and
/// reads it under the lock, for a device that must be a member. Only existing groups get a
/// lock, so unknown ids cannot grow the lock table.
async fn lock_member_group(
    state: &crate::state::AppState,
    group_id: &str,
    device_id: &str,
) -> Result<(tokio::sync::OwnedMutexGuard<()>, vellum_store::GroupState), ApiError> {
    state
        .store
        .group(group_id)
        .await?
        .ok_or_else(unknown_chat)?;
    let ordered = state.group_lock(group_id).lock_owned().await;
    let group = state
        .store
        .group(group_id)
        .await?
        .ok_or_else(unknown_chat)?;
    if !state.store.is_member(group_id, device_id).await? {
        return Err(not_member());
    }
    Ok((ordered, group))
}

fn not_member() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        codes::NOT_MEMBER,
        "device is not a member of this chat",
    )
}

/// Posts a PublicMessage commit (with the Welcome for devices it adds). Exactly one commit
/// wins each epoch; the others get `409 stale_epoch`. A change only the chat's admins may make
/// (issue 10: see `vellum_mls::authorize_commit`) by another member is `403 not_chat_admin`.
#[utoipa::path(post, path = "/v1/groups/{group_id}/commits", tag = "groups",
    params(("group_id" = String, Path, description = "The group id, hex")),
    request_body = PostCommit,
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 200, description = "Stored in the group's log", body = Accepted),
        (status = 409, description = "`stale_epoch`: sync and retry; `record_required`: the org \
            keeps this transitory chat as records, and only the commit converting it is taken", body = ErrorBody),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn post_commit(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Path(group_id): Path<String>,
    Json(req): Json<PostCommit>,
) -> Result<Json<Accepted>, ApiError> {
    let commit = vellum_mls::parse_message(&req.commit)?;
    if let Some(welcome) = &req.welcome {
        let welcome = vellum_mls::parse_message(welcome)?;
        if welcome.wire_format() != vellum_mls::mls_rs::WireFormat::Welcome {
            return Err(ApiError::bad_request("welcome is not an MLS Welcome"));
        }
    }
    let (_ordered, group) = lock_member_group(&state, &group_id, &me.device_id).await?;
    let received_at = state.now_millis();
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
    // The cached state is used only at the state version the store holds (another node's
    // commit or leave bumps it); anything else reloads.
    let cached = state.take_cached_group(&group_id, group.state_version);
    let device = me.device_id.clone();
    let stored_state = group.state;
    let applied = state
        .blocking(move |state| {
            let mut tracked = match cached {
                Some(tracked) => tracked,
                None => state.tracker.load(&stored_state)?,
            };
            let policy_before = tracked.policy()?;
            let archiver_before = tracked.archiver()?;
            let outcome = tracked.apply_commit(commit, &device)?;
            let policy = tracked.policy()?;
            let archiver = tracked.archiver()?;
            let members = tracked.member_devices()?;
            let snapshot = tracked.state()?;
            Ok(AppliedCommit {
                tracked,
                policy_changed: policy != policy_before,
                policy,
                archiver_before,
                archiver,
                members,
                outcome,
                snapshot,
            })
        })
        .await?;
    // Roles (issue 10): a device of another user goes without an admin only when the
    // server's records say it may (revoked, pending, unknown, or under another key).
    let mut may_go = std::collections::BTreeSet::new();
    for removed in &applied.outcome.change.removed {
        let cert = &removed.device;
        let record = state.store.device_record(&cert.device_id).await?;
        let gone = match record {
            None => true,
            Some(r) => {
                matches!(r.state, DeviceState::Revoked | DeviceState::Pending)
                    || r.device.signature_key != cert.signature_key
            }
        };
        if gone {
            may_go.insert(cert.device_id.clone());
        }
    }
    vellum_mls::authorize_commit(&applied.outcome.change, &|c| may_go.contains(&c.device_id))?;
    // A device that left (its proposal was taken, its delivery stopped) must not stay in the
    // tree: a commit built before the proposal arrived is stale, and rebuilt it includes it.
    let delivered = state.store.group_members(&group_id).await?;
    if applied
        .members
        .iter()
        .any(|d| !delivered.contains(d) && !applied.outcome.added.contains(d))
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            codes::STALE_EPOCH,
            "a member has left: sync, then commit including its removal proposal",
        ));
    }
    let org = state.store.org_policy().await?;
    if applied.policy_changed {
        applied.policy.check(&org)?;
    }
    let trust = super::records::trust(&state).await?;
    check_class(
        &org,
        trust.as_ref(),
        Some(applied.archiver_before.as_deref()),
        applied.archiver.as_deref(),
        must_convert(&org, group.held),
    )?;
    for added in &applied.outcome.added {
        let record = state.store.device_record(added).await?;
        // The archiver's identity has one device: no commit adds another device of `records`.
        let is_records = record
            .as_ref()
            .is_none_or(|r| r.device.user == RECORDS_USER);
        if is_records && org.archiver_device.as_deref() != Some(added.as_str()) {
            return Err(ApiError::from(vellum_mls::PolicyViolation(
                "only the org's archiver device may join as the records archive".into(),
            )));
        }
        // Nobody joins a chat before a device of its user approved it (issue 9), or after
        // its revocation.
        let refused = match record.map(|r| r.state) {
            Some(DeviceState::Pending) => Some("is waiting for approval by a device of its user"),
            Some(DeviceState::Revoked) => Some("was revoked"),
            _ => None,
        };
        if let Some(why) = refused {
            return Err(ApiError::from(vellum_mls::PolicyViolation(format!(
                "device {added} {why}: it cannot be added to a chat"
            ))));
        }
    }
    // A record chat always contains the archiver, from its first commit on.
    if let Some(archiver) = &applied.archiver {
        if !applied.members.contains(archiver) {
            return Err(ApiError::from(vellum_mls::PolicyViolation(
                "a record chat must keep the org's archiver as a member".into(),
            )));
        }
    }
    let outcome = applied.outcome;
    if !outcome.added.is_empty() && req.welcome.is_none() {
        return Err(ApiError::bad_request(
            "a commit that adds members needs their Welcome",
        ));
    }
    // The compare-and-set on the epoch inside the store's transaction decides the winner.
    let appended = state
        .store
        .append_commit(CommitAppend {
            group_id: group_id.clone(),
            expected_epoch: group.epoch,
            // A leave through another node since `group` was read: 409, the client syncs.
            expected_state_version: group.state_version,
            new_epoch: outcome.new_epoch,
            state: applied.snapshot,
            timers: timers(applied.policy),
            record: applied.archiver.is_some(),
            sender_device: me.device_id.clone(),
            payload: req.commit.0,
            received_at,
            added: outcome.added.clone(),
            removed: outcome.removed.clone(),
            welcome: req.welcome.map(B64::into_inner),
        })
        .await?;
    state.cache_group(group_id.clone(), group.state_version + 1, applied.tracked);
    let mut wake = state.store.group_members(&group_id).await?;
    wake.extend(outcome.removed);
    state.notifier.wake(&wake);
    Ok(Json(Accepted {
        seq: appended.seq,
        epoch: appended.epoch,
    }))
}

/// Most proposals one leave carries: one per device of the leaving user.
const MAX_LEAVE_PROPOSALS: usize = 64;

/// How often a leave is applied again after other members' leaves changed the group's state
/// through other nodes; past that the client gets `409 stale_epoch` and retries.
const MAX_LEAVE_ATTEMPTS: u32 = 8;

/// Leaving (issue 10): PublicMessage proposals, signed by the requesting device, each removing
/// one device of its own user, at the current epoch. The server's tracker takes them (so the
/// commit that includes them by reference verifies), logs them, and at once stops delivering to
/// those devices; another member's device commits them.
#[utoipa::path(post, path = "/v1/groups/{group_id}/leave", tag = "groups",
    params(("group_id" = String, Path, description = "The group id, hex")),
    request_body = LeaveChat,
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 200, description = "Logged; the leaving devices get nothing more", body = Accepted),
        (status = 409, description = "`stale_epoch`: sync and propose again at the new epoch", body = ErrorBody),
        (status = "4XX", description = "Refused (see code): `not_chat_admin` for a proposal \
            removing another user's device", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn leave(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Path(group_id): Path<String>,
    Json(req): Json<LeaveChat>,
) -> Result<Json<Accepted>, ApiError> {
    if req.proposals.is_empty() || req.proposals.len() > MAX_LEAVE_PROPOSALS {
        return Err(ApiError::bad_request(format!(
            "a leave carries 1 to {MAX_LEAVE_PROPOSALS} proposals"
        )));
    }
    let proposals = req
        .proposals
        .iter()
        .map(|p| vellum_mls::parse_message(p))
        .collect::<Result<Vec<_>, _>>()?;
    let (_ordered, mut group) = lock_member_group(&state, &group_id, &me.device_id).await?;
    let payloads: Vec<Vec<u8>> = req.proposals.into_iter().map(B64::into_inner).collect();
    // The group lock orders leaves within this node only: a leave through another node in
    // the same epoch changes the stored state under us, and the store's compare-and-set on
    // the state version refuses ours. The proposals stay valid at that epoch, so they are
    // applied again on the fresh state (a bounded number of times: each retry means another
    // leave succeeded).
    let mut attempts = 0;
    let (appended, tracked, leaving, version) = loop {
        attempts += 1;
        let cached = state.take_cached_group(&group_id, group.state_version);
        let device = me.device_id.clone();
        let stored_state = std::mem::take(&mut group.state);
        let proposals = proposals.clone();
        let (tracked, leaving, snapshot) = state
            .blocking(move |state| {
                let mut tracked = match cached {
                    Some(tracked) => tracked,
                    None => state.tracker.load(&stored_state)?,
                };
                let mut leaving = Vec::new();
                for proposal in proposals {
                    let leave = tracked.observe_leave(proposal, &device)?;
                    if leaving.contains(&leave.device_id) {
                        return Err(ApiError::bad_request("a device is proposed twice"));
                    }
                    leaving.push(leave.device_id);
                }
                if !leaving.contains(&device) {
                    return Err(ApiError::bad_request(
                        "a leave removes the requesting device too",
                    ));
                }
                let snapshot = tracked.state()?;
                Ok((tracked, leaving, snapshot))
            })
            .await?;
        let appending = state
            .store
            .append_proposals(ProposalAppend {
                group_id: group_id.clone(),
                epoch: group.epoch,
                expected_state_version: group.state_version,
                state: snapshot,
                sender_device: me.device_id.clone(),
                payloads: payloads.clone(),
                received_at: state.now_millis(),
                leaving: leaving.clone(),
            })
            .await;
        match appending {
            Ok(appended) => break (appended, tracked, leaving, group.state_version + 1),
            Err(vellum_store::Error::StaleState { .. }) if attempts < MAX_LEAVE_ATTEMPTS => {
                group = state
                    .store
                    .group(&group_id)
                    .await?
                    .ok_or_else(unknown_chat)?;
                if !state.store.is_member(&group_id, &me.device_id).await? {
                    return Err(not_member());
                }
            }
            Err(e) => return Err(e.into()),
        }
    };
    state.cache_group(group_id.clone(), version, tracked);
    let mut wake = state.store.group_members(&group_id).await?;
    wake.extend(leaving);
    state.notifier.wake(&wake);
    Ok(Json(Accepted {
        seq: appended.seq,
        epoch: appended.epoch,
    }))
}

struct AppliedCommit {
    tracked: vellum_mls::TrackedGroup,
    policy_changed: bool,
    policy: vellum_mls::ChatPolicy,
    archiver_before: Option<String>,
    archiver: Option<String>,
    members: std::collections::BTreeSet<String>,
    outcome: vellum_mls::CommitOutcome,
    snapshot: Vec<u8>,
}

/// Posts an application message (an MLS PrivateMessage). Retries with the same
/// `client_msg_id` are stored once. A transitory chat the org now keeps as records takes
/// no message until a member has committed its conversion.
#[utoipa::path(post, path = "/v1/groups/{group_id}/messages", tag = "groups",
    params(("group_id" = String, Path, description = "The group id, hex")),
    request_body = PostMessage,
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 200, description = "Stored in the group's log", body = Accepted),
        (status = 409, description = "`stale_epoch`: sync and encrypt again; `record_required`: \
            the org keeps this transitory chat as records, so commit its conversion (add the \
            RecordChat GroupContext extension 0xF0A2 naming the org's archiver, and the archiver \
            as a member), then send again", body = ErrorBody),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn post_message(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Path(group_id): Path<String>,
    Json(req): Json<PostMessage>,
) -> Result<Json<Accepted>, ApiError> {
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
    let org = state.store.org_policy().await?;
    if !group.record && must_convert(&org, group.held) {
        // Nothing said here now would reach the archive.
        if !state.store.is_member(&group_id, &me.device_id).await? {
            return Err(not_member());
        }
        return Err(record_required());
    }
    if group.record {
        // A replaced archiver hears nothing more: until the chat names the new one, nothing
        // said here would reach the archive.
        let archived = match &org.archiver_device {
            Some(archiver) => state.store.is_member(&group_id, archiver).await?,
            None => false,
        };
        if !archived {
            if !state.store.is_member(&group_id, &me.device_id).await? {
                return Err(not_member());
            }
            return Err(archiver_replaced());
        }
    }
    if req.expires_at.is_some_and(|t| t <= 0) {
        return Err(ApiError::bad_request(
            "expires_at must be a positive Unix time in milliseconds",
        ));
    }
    // The server only ever shortens a message's life: to the chat's timer and the org's maximum.
    let received_at = state.now_millis();
    let limit = |secs: Option<u64>| {
        secs.map(|s| received_at.saturating_add((s as i64).saturating_mul(1000)))
    };
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

/// Deletes one's own message for everyone.
#[utoipa::path(delete, path = "/v1/groups/{group_id}/messages/{seq}", tag = "groups",
    params(
        ("group_id" = String, Path, description = "The group id, hex"),
        ("seq" = u64, Path, description = "The message's position in the log"),
    ),
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
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

/// Issue 10, delivery state: how far each current member device has acknowledged the chat's
/// log. Members only (the cursors say when each member was last online).
#[utoipa::path(get, path = "/v1/groups/{group_id}/cursors", tag = "groups",
    params(("group_id" = String, Path, description = "The group id, hex")),
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 200, description = "Each current member device's acknowledged seq", body = GroupCursors),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn cursors(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Path(group_id): Path<String>,
) -> Result<Json<GroupCursors>, ApiError> {
    state
        .store
        .group(&group_id)
        .await?
        .ok_or_else(unknown_chat)?;
    if !state.store.is_member(&group_id, &me.device_id).await? {
        return Err(not_member());
    }
    Ok(Json(GroupCursors {
        cursors: state.store.group_cursors(&group_id).await?,
    }))
}
