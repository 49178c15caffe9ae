//! `/v1/holds`: legal holds. A hold is a leaf of the log (`hold` / `release`), so its whole
//! history, with its reason and author, is public to auditors; a record under any hold in
//! force is never disposed.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use vellum_archive::Leaf;
use vellum_http::{codes, ApiError};
use vellum_record::api::office::Permission;
use vellum_record::api::{Hold, HoldRequest};

use super::{bad_request, caller, internal, now_ms, on_vault, open_records, ErrorBody, St};
use crate::retention::active_holds;
use crate::Vault;

const MAX_NAMES: usize = 100;
const MAX_REASON: usize = 2000;

/// The holds in force, with how many records each keeps (counted only while unsealed).
pub(crate) fn holds_in_force(v: &Vault) -> Result<Vec<Hold>, ApiError> {
    let mut holds = active_holds(&v.archive).map_err(internal)?;
    count_kept(v, &mut holds);
    Ok(holds)
}

/// Sets how many records each hold keeps, when the archive is unsealed (else leaves `None`).
fn count_kept(v: &Vault, holds: &mut [Hold]) {
    let Some(records) = open_records(v) else {
        return;
    };
    for hold in holds {
        let kept = records
            .iter()
            .filter(|r| hold.covers(&r.event, r.archived_at))
            .count();
        hold.records = Some(kept as u64);
    }
}

/// Places a hold for `author`: checks every name against what the archiver knows, so that a
/// misspelt custodian or chat is refused rather than silently holding nothing.
pub(crate) fn place(
    v: &mut Vault,
    author: &str,
    req: HoldRequest,
    settings: &crate::settings::OfficeSettings,
) -> Result<Hold, ApiError> {
    let name = req.name.trim().to_owned();
    if name.is_empty()
        || name.len() > 100
        || name.contains('/')
        || name.chars().any(char::is_control)
    {
        return Err(bad_request(
            "a hold name is 1 to 100 characters, without '/' or control characters",
        ));
    }
    if req.custodians.len() > MAX_NAMES || req.chats.len() > MAX_NAMES {
        return Err(bad_request(format!(
            "a hold names at most {MAX_NAMES} custodians and {MAX_NAMES} chats"
        )));
    }
    let reason = req
        .reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.len() > MAX_REASON) {
        return Err(bad_request(format!(
            "a hold's reason is at most {MAX_REASON} bytes"
        )));
    }
    let (from, to) = settings
        .parse_range(req.from.as_deref(), req.to.as_deref())
        .map_err(bad_request)?;
    let mut custodians = req.custodians;
    custodians.sort();
    custodians.dedup();
    let mut chats = req.chats;
    chats.sort();
    chats.dedup();
    for user in &custodians {
        v.known_user(user).map_err(ApiError::not_found)?;
    }
    // Chats are held by id: a title is whatever a member last set, and the chat's first
    // records predate it.
    let mut chat_ids = Vec::new();
    for chat in &chats {
        let ids = v.chat_ids_named(chat);
        if ids.is_empty() {
            return Err(ApiError::not_found(format!(
                "no record chat {chat:?} (give its id or title): transitory chats are held \
                 through their members as custodians"
            )));
        }
        chat_ids.extend(ids);
    }
    chat_ids.sort();
    chat_ids.dedup();
    let chats = chat_ids;
    if active_holds(&v.archive)
        .map_err(internal)?
        .iter()
        .any(|h| h.name == name)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            codes::CONFLICT,
            format!("a hold named {name:?} is already in force"),
        ));
    }
    let time = now_ms();
    v.archive
        .append(Leaf::Hold {
            time,
            name: name.clone(),
            custodian: None,
            chat: None,
            from,
            to,
            custodians: custodians.clone(),
            chats: chats.clone(),
            reason: reason.clone(),
            author: Some(author.to_owned()),
        })
        .map_err(internal)?;
    // The delivery server hears of it from the ingest loop.
    v.holds_version += 1;
    let mut hold = Hold {
        name,
        custodians,
        chats,
        from,
        to,
        reason,
        author: Some(author.to_owned()),
        placed_at: Some(time),
        records: None,
    };
    count_kept(v, std::slice::from_mut(&mut hold));
    Ok(hold)
}

/// Lifts the hold `name` for `author`.
pub(crate) fn lift(v: &mut Vault, author: &str, name: String) -> Result<(), ApiError> {
    if !active_holds(&v.archive)
        .map_err(internal)?
        .iter()
        .any(|h| h.name == name)
    {
        return Err(ApiError::not_found(format!(
            "no hold named {name:?} is in force"
        )));
    }
    v.archive
        .append(Leaf::Release {
            time: now_ms(),
            name,
            author: Some(author.to_owned()),
        })
        .map_err(internal)?;
    v.holds_version += 1;
    Ok(())
}

/// The holds in force.
#[utoipa::path(get, path = "/v1/holds", tag = "holds",
    security(("api_token" = [])),
    responses(
        (status = 200, description = "Holds in force (with `records` while unsealed)", body = Vec<Hold>),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn list(State(state): St, headers: HeaderMap) -> Result<Json<Vec<Hold>>, ApiError> {
    caller(&state, &headers, Permission::ViewPolicy).await?;
    on_vault(&state, |v| Ok(Json(holds_in_force(v)?))).await
}

/// Places a hold. Unknown custodians (not in the org's directory) and unknown chats are
/// refused.
#[utoipa::path(post, path = "/v1/holds", tag = "holds",
    request_body = HoldRequest,
    security(("api_token" = [])),
    responses(
        (status = 201, description = "Placed", body = Hold),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn create(
    State(state): St,
    headers: HeaderMap,
    req: Result<Json<HoldRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Hold>), ApiError> {
    let caller = caller(&state, &headers, Permission::ManageHolds).await?;
    let Json(req) = req?;
    let settings = state.settings.clone();
    on_vault(&state, move |v| {
        Ok((
            StatusCode::CREATED,
            Json(place(v, &caller.name, req, &settings)?),
        ))
    })
    .await
}

/// Lifts a hold; its records fall under their schedules again.
#[utoipa::path(delete, path = "/v1/holds/{name}", tag = "holds",
    params(("name" = String, Path, description = "The hold's name")),
    security(("api_token" = [])),
    responses(
        (status = 204, description = "Released"),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn release(
    State(state): St,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let caller = caller(&state, &headers, Permission::ManageHolds).await?;
    on_vault(&state, move |v| {
        lift(v, &caller.name, name)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}
