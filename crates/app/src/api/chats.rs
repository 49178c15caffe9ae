//! Chats: create one, its details, its settings (title, timers, read receipts), members,
//! admins, and leaving it. Every change goes through the client's MLS commits on the device
//! thread; the page is told with `chats` / `chat` events.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use vellum_client::{ChatClass, Client, Error};
use vellum_http::ApiError;
use vellum_mls::ChatPolicy;

use super::input;
use super::policy::{self, OrgPolicyView};
use super::view::{ChatSummary, LastMessage};
use crate::device::Device;
use crate::error::client_error;
use crate::events::AppEvent;
use crate::AppState;

/// Longest title the window accepts (characters).
const MAX_TITLE: usize = 200;
/// Most members one request adds.
const MAX_MEMBERS: usize = 500;

/// A chat as the chat list shows it. (The core part may offer `view::chat_summary`; this is
/// the same shape, built from the profile.)
pub(crate) fn summary(client: &Client, group_id: &str) -> Result<ChatSummary, Error> {
    let row = client
        .store()
        .chat(group_id)?
        .ok_or_else(|| Error::UnknownChat("no such chat".into()))?;
    let unread = client.store().unread_counts(client.user())?;
    super::view::chat_summary(client, &row, &unread)
}

/// A member of a chat, for the settings panel.
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub user: String,
    pub admin: bool,
    pub devices: usize,
    pub you: bool,
    /// What it is when it is not a person ("records archive (sealed, 2 of 3 custodians)").
    pub role: Option<String>,
}

/// `GET /api/chats/{id}`: the summary's fields, and the members as a list.
#[derive(Debug, Clone, Serialize)]
pub struct ChatDetail {
    pub id: String,
    pub title: String,
    pub class: &'static str,
    pub unread: u64,
    pub last: Option<LastMessage>,
    pub expire_secs: Option<u64>,
    pub burn_secs: Option<u64>,
    pub held: bool,
    pub removed: bool,
    pub member_count: usize,
    pub members: Vec<MemberView>,
    /// This user may change the chat (an admin, or everyone manages it).
    pub you_admin: bool,
    pub read_receipts: bool,
    /// The org's bounds on the chat's timers (`null` while the server cannot be reached).
    pub bounds: Option<OrgPolicyView>,
    /// Safety and directory warnings about the chat's members.
    pub notices: Vec<String>,
}

pub(crate) async fn detail(client: &Client, group_id: &str) -> Result<ChatDetail, ApiError> {
    let summary = summary(client, group_id).map_err(client_error)?;
    let bounds = policy::view(client).await;
    let mut notices = Vec::new();
    let (members, you_admin, read_receipts) = if summary.removed {
        notices.push("You are no longer a member of this chat".to_owned());
        (Vec::new(), false, false)
    } else {
        let settings = client.chat_settings(group_id).map_err(client_error)?;
        let admins = settings.admin_names();
        let devices = client.member_devices(group_id).map_err(client_error)?;
        let mut by_user: BTreeMap<String, MemberView> = BTreeMap::new();
        for d in &devices {
            if let vellum_client::MemberDeviceState::Directory(vouch) = &d.state {
                if !vouch.is_vouched() {
                    notices.push(format!(
                        "{}'s device {} is {}: it is removed before you send here again",
                        d.user,
                        d.device_id,
                        vouch.reason()
                    ));
                }
            }
            if d.state == vellum_client::MemberDeviceState::NotBoundArchiver {
                notices.push(format!(
                    "device {} of records is NOT the archiver the records custodians bound",
                    d.device_id
                ));
            }
            let entry = by_user.entry(d.user.clone()).or_insert_with(|| MemberView {
                user: d.user.clone(),
                admin: !settings.everyone_manages && admins.contains(&d.user),
                devices: 0,
                you: d.user == client.user(),
                role: None,
            });
            entry.devices += 1;
            // "admin" is the `admin` flag already; other roles (the archive) are shown.
            if let Some(role) = d.role.as_ref().filter(|r| r.as_str() != "admin") {
                entry.role = Some(role.clone());
            }
        }
        let users: Vec<&str> = by_user.keys().map(String::as_str).collect();
        let you_admin = settings.may_manage(client.user(), users.iter().copied());
        for user in by_user.keys() {
            if user == client.user() || user == vellum_wire::RECORDS_USER {
                continue;
            }
            if let Ok(safety) = client.safety(user) {
                if safety.reset_seen {
                    notices.push(format!(
                        "{user}'s identity was reset: compare your safety number with them and confirm it"
                    ));
                }
            }
        }
        (
            by_user.into_values().collect(),
            you_admin,
            settings.read_receipts,
        )
    };
    if summary.held {
        notices.push(
            "A legal hold covers this chat: nothing in it expires or burns until it is released"
                .to_owned(),
        );
    }
    Ok(ChatDetail {
        id: summary.id,
        title: summary.title,
        class: summary.class,
        unread: summary.unread,
        last: summary.last,
        expire_secs: summary.expire_secs,
        burn_secs: summary.burn_secs,
        held: summary.held,
        removed: summary.removed,
        member_count: summary.members,
        members,
        you_admin,
        read_receipts,
        bounds,
        notices,
    })
}

/// Checks that every user is in the org's key directory (refreshed first), so that an
/// unknown name is a 400 naming it rather than a failure deep in a commit.
async fn check_users(client: &mut Client, users: &[String]) -> Result<(), ApiError> {
    if let Err(e) = client.refresh_directory().await {
        // Offline: the copy this device has decides, and the server refuses the rest.
        tracing::debug!(error = %e, "the key directory could not be refreshed");
    }
    let mirror = client.directory().map_err(client_error)?;
    if mirror.state.users.is_empty() {
        return Ok(());
    }
    for user in users {
        if user != vellum_wire::RECORDS_USER && mirror.state.user(user).is_none() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown_user",
                format!("unknown user: {user} is not in the organisation's directory"),
            ));
        }
    }
    Ok(())
}

fn user_list(users: &[String]) -> Result<Vec<String>, ApiError> {
    if users.len() > MAX_MEMBERS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_MEMBERS} members at once"
        )));
    }
    let mut out = Vec::with_capacity(users.len());
    for user in users {
        let user = input::user_name(user)?.to_owned();
        if !out.contains(&user) {
            out.push(user);
        }
    }
    Ok(out)
}

fn title(raw: &str) -> Result<String, ApiError> {
    let title = raw.trim();
    if title.is_empty() {
        return Err(ApiError::bad_request("a chat needs a title"));
    }
    if title.chars().count() > MAX_TITLE || title.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "a title is one line of at most {MAX_TITLE} characters"
        )));
    }
    Ok(title.to_owned())
}

fn changed(state: &AppState, chat: &str) {
    let _ = state.events.send(AppEvent::Chats);
    let _ = state.events.send(AppEvent::Chat {
        chat: chat.to_owned(),
    });
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    title: String,
    #[serde(default)]
    members: Vec<String>,
    #[serde(default)]
    expire_secs: Option<u64>,
    #[serde(default)]
    burn_secs: Option<u64>,
    /// `record` or `transitory`; absent: the org's default.
    #[serde(default)]
    class: Option<String>,
}

/// `POST /api/chats {title, members, expire_secs?, burn_secs?, class?}` → 201 ChatSummary.
pub async fn create(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<ChatSummary>), ApiError> {
    let body: CreateBody = input::json(&body)?;
    let title = title(&body.title)?;
    let members = user_list(&body.members)?;
    let timers = ChatPolicy {
        expire_secs: input::timer("expire_secs", body.expire_secs)?,
        burn_secs: input::timer("burn_secs", body.burn_secs)?,
    };
    let class = match body.class.as_deref() {
        None => None,
        Some("record") => Some(ChatClass::Record),
        Some("transitory") => Some(ChatClass::Transitory),
        Some(_) => return Err(ApiError::bad_request("class is record or transitory")),
    };
    let summary = state
        .device
        .run(async move |device: &mut Device| {
            let client = device.client()?;
            let with: Vec<String> = members.into_iter().filter(|u| u != client.user()).collect();
            check_users(client, &with).await?;
            let group_id = client
                .create_chat(&title, &with, timers, class)
                .await
                .map_err(client_error)?;
            summary(client, &group_id).map_err(client_error)
        })
        .await?;
    changed(&state, &summary.id);
    Ok((StatusCode::CREATED, Json(summary)))
}

/// `GET /api/chats/{id}` → ChatDetail.
pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ChatDetail>, ApiError> {
    state
        .device
        .run(async move |device: &mut Device| {
            let client = device.client()?;
            let group_id = input::chat_id(client, &id)?;
            detail(client, &group_id).await
        })
        .await
        .map(Json)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsBody {
    #[serde(default)]
    title: Option<String>,
    /// Absent: unchanged; `null`: no timer.
    #[serde(default, deserialize_with = "input::present")]
    expire_secs: Option<Option<u64>>,
    #[serde(default, deserialize_with = "input::present")]
    burn_secs: Option<Option<u64>>,
    #[serde(default)]
    read_receipts: Option<bool>,
}

/// `POST /api/chats/{id}/settings {title?, expire_secs?, burn_secs?, read_receipts?}`.
/// Outside the org's bounds: 400 naming the bound, and nothing changes.
pub async fn settings(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<ChatDetail>, ApiError> {
    let body: SettingsBody = input::json(&body)?;
    let new_title = body.title.as_deref().map(title).transpose()?;
    let expire = body
        .expire_secs
        .map(|e| input::timer("expire_secs", e))
        .transpose()?;
    let burn = body
        .burn_secs
        .map(|b| input::timer("burn_secs", b))
        .transpose()?;
    let read_receipts = body.read_receipts;
    let (detail, group_id) = state
        .device
        .run(async move |device: &mut Device| {
            let client = device.client()?;
            let group_id = input::chat_id(client, &id)?;
            let before = client.chat_policy(&group_id).map_err(client_error)?;
            let expire = expire.filter(|e| *e != before.expire_secs);
            let burn = burn.filter(|b| *b != before.burn_secs);
            // The bounds first: a refused timer must leave the title as it was too.
            if expire.is_some() || burn.is_some() {
                let wanted = ChatPolicy {
                    expire_secs: expire.unwrap_or(before.expire_secs),
                    burn_secs: burn.unwrap_or(before.burn_secs),
                };
                if let Some(org) = policy::org_policy(client).await {
                    wanted.check(&org).map_err(|e| {
                        ApiError::new(StatusCode::BAD_REQUEST, "policy_violation", e.0)
                    })?;
                }
            }
            let current = client
                .store()
                .chat(&group_id)
                .map_err(client_error)?
                .and_then(|c| c.title);
            if let Some(t) = new_title.filter(|t| current.as_deref() != Some(t.as_str())) {
                client
                    .rename_chat(&group_id, &t)
                    .await
                    .map_err(client_error)?;
            }
            if expire.is_some() || burn.is_some() {
                client
                    .set_timers(&group_id, expire, burn)
                    .await
                    .map_err(client_error)?;
            }
            if let Some(on) = read_receipts {
                let now = client.chat_settings(&group_id).map_err(client_error)?;
                if now.read_receipts != on {
                    client
                        .set_read_receipts(&group_id, on)
                        .await
                        .map_err(client_error)?;
                }
            }
            Ok((detail(client, &group_id).await?, group_id))
        })
        .await?;
    changed(&state, &group_id);
    Ok(Json(detail))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MembersBody {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
}

/// `POST /api/chats/{id}/members {add?, remove?}` → ChatDetail.
pub async fn members(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<ChatDetail>, ApiError> {
    let body: MembersBody = input::json(&body)?;
    let add = user_list(&body.add)?;
    let remove = user_list(&body.remove)?;
    if add.is_empty() && remove.is_empty() {
        return Err(ApiError::bad_request("say whom to add or remove"));
    }
    let (detail, group_id) = state
        .device
        .run(async move |device: &mut Device| {
            let client = device.client()?;
            let group_id = input::chat_id(client, &id)?;
            if !add.is_empty() {
                check_users(client, &add).await?;
                client
                    .add_members(&group_id, &add)
                    .await
                    .map_err(client_error)?;
            }
            if !remove.is_empty() {
                client
                    .remove_members(&group_id, &remove)
                    .await
                    .map_err(client_error)?;
            }
            Ok((detail(client, &group_id).await?, group_id))
        })
        .await?;
    changed(&state, &group_id);
    Ok(Json(detail))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminBody {
    user: String,
    admin: bool,
}

/// `POST /api/chats/{id}/admins {user, admin}` → ChatDetail.
pub async fn admins(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<ChatDetail>, ApiError> {
    let body: AdminBody = input::json(&body)?;
    let user = input::user_name(&body.user)?.to_owned();
    let (detail, group_id) = state
        .device
        .run(async move |device: &mut Device| {
            let client = device.client()?;
            let group_id = input::chat_id(client, &id)?;
            client
                .set_admin(&group_id, &user, body.admin)
                .await
                .map_err(client_error)?;
            Ok((detail(client, &group_id).await?, group_id))
        })
        .await?;
    changed(&state, &group_id);
    Ok(Json(detail))
}

/// `POST /api/chats/{id}/leave` → 204.
pub async fn leave(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let group_id = state
        .device
        .run(async move |device: &mut Device| {
            let client = device.client()?;
            let group_id = input::chat_id(client, &id)?;
            client.leave_chat(&group_id).await.map_err(client_error)?;
            Ok(group_id)
        })
        .await?;
    changed(&state, &group_id);
    Ok(StatusCode::NO_CONTENT)
}
