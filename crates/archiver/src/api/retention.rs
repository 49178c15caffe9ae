//! `/v1/schedules` (retention schedules: view, define, assign) and `/v1/audit` (the trail
//! of every access, hold and disposition, from the log).

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::Json;
use vellum_archive::Leaf;
use vellum_http::ApiError;
use vellum_record::api::office::Permission;
use vellum_record::api::{
    AssignSchedule, AuditEntry, AuditQuery, ChatClasses, DefineSchedule, RecordChat,
};

use super::{bad_request, caller, internal, log_access, on_vault, ErrorBody, St};
use crate::retention::{Schedules, Subject};
use crate::settings::Bound;
use crate::Vault;

const DEFAULT_AUDIT_LIMIT: u32 = 1_000;
const MAX_AUDIT_LIMIT: u32 = 10_000;

/// Applies `change` to a copy of the schedules, saves it, and only then makes it current,
/// so a failed write changes nothing.
fn change_schedules(
    v: &mut Vault,
    change: impl FnOnce(&mut Schedules) -> Result<(), String>,
) -> Result<Schedules, ApiError> {
    let mut next = v.schedules.clone();
    change(&mut next).map_err(bad_request)?;
    if let Some(path) = &v.schedules_path {
        next.save(path).map_err(internal)?;
    }
    v.schedules = next.clone();
    Ok(next)
}

/// The schedules, their assignments and the default.
#[utoipa::path(get, path = "/v1/schedules", tag = "retention",
    security(("api_token" = [])),
    responses(
        (status = 200, description = "The retention schedules", body = Schedules),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
    ))]
pub async fn list(State(state): St, headers: HeaderMap) -> Result<Json<Schedules>, ApiError> {
    caller(&state, &headers, Permission::ViewPolicy).await?;
    on_vault(&state, |v| Ok(Json(v.schedules.clone()))).await
}

/// Defines or redefines a schedule.
#[utoipa::path(post, path = "/v1/schedules", tag = "retention",
    request_body = DefineSchedule,
    security(("api_token" = [])),
    responses(
        (status = 200, description = "The schedules after the change", body = Schedules),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn define(
    State(state): St,
    headers: HeaderMap,
    req: Result<Json<DefineSchedule>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Schedules>, ApiError> {
    let caller = caller(&state, &headers, Permission::ManageRetention).await?;
    let Json(req) = req?;
    on_vault(&state, move |v| {
        Ok(Json(define_schedule(v, &caller.name, req)?))
    })
    .await
}

/// Defines or redefines a schedule for `author` (the API's and the console's).
pub(crate) fn define_schedule(
    v: &mut Vault,
    author: &str,
    req: DefineSchedule,
) -> Result<Schedules, ApiError> {
    let schedules = change_schedules(v, |s| s.define(&req.name, &req.keep))?;
    log_access(
        v,
        "schedule",
        &format!(
            "{author} defined schedule {:?}: keep {}",
            req.name.trim(),
            req.keep.trim()
        ),
    );
    Ok(schedules)
}

/// Puts a chat or a user under a schedule. Unknown chats and users are refused.
#[utoipa::path(post, path = "/v1/schedules/assign", tag = "retention",
    request_body = AssignSchedule,
    security(("api_token" = [])),
    responses(
        (status = 200, description = "The schedules after the change", body = Schedules),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn assign(
    State(state): St,
    headers: HeaderMap,
    req: Result<Json<AssignSchedule>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Schedules>, ApiError> {
    let caller = caller(&state, &headers, Permission::ManageRetention).await?;
    let Json(req) = req?;
    on_vault(&state, move |v| {
        Ok(Json(assign_schedule(v, &caller.name, req)?))
    })
    .await
}

/// Puts a chat or a user under a schedule for `author` (the API's and the console's).
pub(crate) fn assign_schedule(
    v: &mut Vault,
    author: &str,
    req: AssignSchedule,
) -> Result<Schedules, ApiError> {
    let subject = match (req.chat, req.user) {
        (Some(chat), None) => Subject::Chat(chat),
        (None, Some(user)) => Subject::User(user),
        _ => return Err(bad_request("give exactly one of chat and user")),
    };
    match &subject {
        Subject::User(user) => v.known_user(user).map_err(ApiError::not_found)?,
        Subject::Chat(chat) if v.chat_ids_named(chat).is_empty() => {
            return Err(ApiError::not_found(format!(
                "no record chat {chat:?} (give its id or title)"
            )))
        }
        Subject::Chat(_) => {}
    }
    let what = match &subject {
        Subject::Chat(c) => format!("chat {c:?}"),
        Subject::User(u) => format!("user {u:?}"),
    };
    let schedules = change_schedules(v, |s| s.assign(subject, &req.schedule))?;
    log_access(
        v,
        "schedule",
        &format!("{author} put {what} under schedule {:?}", req.schedule),
    );
    Ok(schedules)
}

/// Which chats are archived (record) and which are not (transitory, metadata only).
#[utoipa::path(get, path = "/v1/chats", tag = "retention",
    security(("api_token" = [])),
    responses(
        (status = 200, description = "Record and transitory chats", body = ChatClasses),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
    ))]
pub async fn chats(State(state): St, headers: HeaderMap) -> Result<Json<ChatClasses>, ApiError> {
    caller(&state, &headers, Permission::ViewPolicy).await?;
    on_vault(&state, |v| {
        let record = v
            .known_chats
            .iter()
            .map(|(id, title)| RecordChat {
                id: id.clone(),
                title: title.clone(),
            })
            .collect();
        Ok(Json(ChatClasses {
            record,
            transitory: v.transitory.as_ref().map(|(_, t)| t.clone()),
            transitory_as_of: v.transitory.as_ref().map(|(at, _)| *at),
        }))
    })
    .await
}

/// The audit trail, newest first: every access, hold, release and disposition leaf.
pub(crate) fn audit_trail(
    v: &Vault,
    from: Option<i64>,
    limit: u32,
) -> Result<Vec<AuditEntry>, ApiError> {
    let mut out = Vec::new();
    for leaf in (0..v.archive.size()).rev() {
        if out.len() >= limit as usize {
            break;
        }
        let entry = match v.archive.leaf(leaf).map_err(internal)? {
            Leaf::Record { .. } => continue,
            Leaf::Access {
                time,
                action,
                detail,
            } => AuditEntry {
                leaf,
                time,
                kind: "access".into(),
                action,
                detail,
            },
            Leaf::Hold {
                time,
                name,
                reason,
                author,
                ..
            } => AuditEntry {
                leaf,
                time,
                kind: "hold".into(),
                action: "hold".into(),
                detail: format!(
                    "{} placed hold {name:?}{}",
                    author.as_deref().unwrap_or("the records office"),
                    reason.map(|r| format!(": {r}")).unwrap_or_default()
                ),
            },
            Leaf::Release { time, name, author } => AuditEntry {
                leaf,
                time,
                kind: "release".into(),
                action: "release".into(),
                detail: format!(
                    "{} released hold {name:?}",
                    author.as_deref().unwrap_or("the records office")
                ),
            },
            Leaf::Disposition {
                time,
                record,
                schedule,
            } => AuditEntry {
                leaf,
                time,
                kind: "disposition".into(),
                action: "dispose".into(),
                detail: format!("record {record} disposed at the end of schedule {schedule:?}"),
            },
        };
        if from.is_some_and(|f| entry.time < f) {
            // Leaves are appended in time order: everything older follows.
            break;
        }
        out.push(entry);
    }
    Ok(out)
}

/// The audit trail, newest first (reading it is itself an access leaf).
#[utoipa::path(get, path = "/v1/audit", tag = "audit",
    params(AuditQuery),
    security(("api_token" = [])),
    responses(
        (status = 200, description = "Audit entries, newest first", body = Vec<AuditEntry>),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn audit(
    State(state): St,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let caller = caller(&state, &headers, Permission::ReadAudit).await?;
    let Query(query) = query.map_err(|e| bad_request(e.body_text()))?;
    let from = query
        .from
        .as_deref()
        .map(|f| state.settings.parse_time(f, Bound::Start))
        .transpose()
        .map_err(bad_request)?;
    let limit = query.limit.unwrap_or(DEFAULT_AUDIT_LIMIT);
    if limit == 0 || limit > MAX_AUDIT_LIMIT {
        return Err(bad_request(format!("limit is 1 to {MAX_AUDIT_LIMIT}")));
    }
    on_vault(&state, move |v| {
        let entries = audit_trail(v, from, limit)?;
        log_access(
            v,
            "audit",
            &format!("{} read {} audit entries", caller.name, entries.len()),
        );
        Ok(Json(entries))
    })
    .await
}
