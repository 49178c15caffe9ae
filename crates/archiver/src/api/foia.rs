//! `/v1/foia/cases…`: FOIA cases, review, redaction and productions. Thin wrappers over
//! [`crate::foia`], which the console calls too.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use vellum_http::{codes, ApiError, Path};
use vellum_record::api::foia::{
    AddLeaves, AddNote, Added, Case, CaseDetail, CaseItem, CaseSummary, CreateCase, NameRedaction,
    Note, ProductionJob, RedactName, RedactRequest, Redaction, ReviewRequest, StartProduction,
    UpdateCase,
};
use vellum_record::api::office::Permission;
use vellum_record::api::search::SearchRequest;

use super::{caller, internal, on_vault, sealed_error, ErrorBody, St};
use crate::foia::{self, jobs, FoiaError};

pub(crate) fn foia_error(e: FoiaError) -> ApiError {
    let message = e.to_string();
    match e {
        FoiaError::Sealed => sealed_error(&message),
        FoiaError::Forbidden(..) => ApiError::new(StatusCode::FORBIDDEN, codes::FORBIDDEN, message),
        FoiaError::NoSuchCase(_)
        | FoiaError::NotInCase { .. }
        | FoiaError::NoSuchRecord(_)
        | FoiaError::NoSuchRedaction { .. }
        | FoiaError::NoSuchJob { .. } => ApiError::not_found(message),
        FoiaError::Invalid(_) => ApiError::bad_request(message),
        FoiaError::Closed(_) | FoiaError::Conflict(_) => {
            ApiError::new(StatusCode::CONFLICT, codes::CONFLICT, message)
        }
        FoiaError::Db(_) | FoiaError::Corrupt(_) => internal(message),
    }
}

/// Opens a new case; its due date is counted on the office's calendar.
#[utoipa::path(post, path = "/v1/foia/cases", tag = "foia",
    request_body = CreateCase,
    security(("api_token" = [])),
    responses(
        (status = 201, description = "Created", body = Case),
        (status = "4XX", description = "Refused (see code; 423 sealed)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn create_case(
    State(state): St,
    headers: HeaderMap,
    req: Result<Json<CreateCase>, JsonRejection>,
) -> Result<(StatusCode, Json<Case>), ApiError> {
    let caller = caller(&state, &headers, Permission::Cases).await?;
    let Json(req) = req?;
    let settings = state.settings.clone();
    on_vault(&state, move |v| {
        foia::create(v, &caller, &settings, req)
            .map(|c| (StatusCode::CREATED, Json(c)))
            .map_err(foia_error)
    })
    .await
}

/// Every case, briefly.
#[utoipa::path(get, path = "/v1/foia/cases", tag = "foia",
    security(("api_token" = [])),
    responses(
        (status = 200, description = "The cases", body = Vec<CaseSummary>),
        (status = "4XX", description = "Refused (see code; 423 sealed)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn list_cases(
    State(state): St,
    headers: HeaderMap,
) -> Result<Json<Vec<CaseSummary>>, ApiError> {
    let caller = caller(&state, &headers, Permission::Cases).await?;
    on_vault(&state, move |v| {
        foia::list(v, &caller).map(Json).map_err(foia_error)
    })
    .await
}

/// A case with its review set's records opened.
#[utoipa::path(get, path = "/v1/foia/cases/{id}", tag = "foia",
    params(("id" = String, Path, description = "The case id, FOIA-2026-0001")),
    security(("api_token" = [])),
    responses(
        (status = 200, description = "The case", body = CaseDetail),
        (status = "4XX", description = "Refused (see code; 423 sealed)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn show_case(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<CaseDetail>, ApiError> {
    let caller = caller(&state, &headers, Permission::Cases).await?;
    on_vault(&state, move |v| {
        foia::show(v, &caller, &id).map(Json).map_err(foia_error)
    })
    .await
}

/// Changes a case's status, analyst or due date.
#[utoipa::path(patch, path = "/v1/foia/cases/{id}", tag = "foia",
    params(("id" = String, Path, description = "The case id")),
    request_body = UpdateCase,
    security(("api_token" = [])),
    responses(
        (status = 200, description = "The case as changed", body = Case),
        (status = "4XX", description = "Refused (see code; 423 sealed)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn update_case(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    req: Result<Json<UpdateCase>, JsonRejection>,
) -> Result<Json<Case>, ApiError> {
    let caller = caller(&state, &headers, Permission::Cases).await?;
    let Json(req) = req?;
    on_vault(&state, move |v| {
        foia::update(v, &caller, &id, req)
            .map(Json)
            .map_err(foia_error)
    })
    .await
}

/// Adds a note to a case.
#[utoipa::path(post, path = "/v1/foia/cases/{id}/notes", tag = "foia",
    params(("id" = String, Path, description = "The case id")),
    request_body = AddNote,
    security(("api_token" = [])),
    responses(
        (status = 201, description = "Added", body = Note),
        (status = "4XX", description = "Refused (see code; 423 sealed)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn add_note(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    req: Result<Json<AddNote>, JsonRejection>,
) -> Result<(StatusCode, Json<Note>), ApiError> {
    let caller = caller(&state, &headers, Permission::Cases).await?;
    let Json(req) = req?;
    on_vault(&state, move |v| {
        foia::add_note(v, &caller, &id, &req.text)
            .map(|n| (StatusCode::CREATED, Json(n)))
            .map_err(foia_error)
    })
    .await
}

/// Adds every record a search finds to the case's review set.
#[utoipa::path(post, path = "/v1/foia/cases/{id}/items", tag = "foia",
    params(("id" = String, Path, description = "The case id")),
    request_body = SearchRequest,
    security(("api_token" = [])),
    responses(
        (status = 200, description = "What was added", body = Added),
        (status = "4XX", description = "Refused (see code; 423 sealed)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn add_items(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    req: Result<Json<SearchRequest>, JsonRejection>,
) -> Result<Json<Added>, ApiError> {
    let caller = caller(&state, &headers, Permission::Cases).await?;
    let Json(req) = req?;
    on_vault(&state, move |v| {
        foia::add_search(v, &caller, &id, req)
            .map(Json)
            .map_err(foia_error)
    })
    .await
}

/// Adds records to the review set by leaf index.
#[utoipa::path(post, path = "/v1/foia/cases/{id}/leaves", tag = "foia",
    params(("id" = String, Path, description = "The case id")),
    request_body = AddLeaves,
    security(("api_token" = [])),
    responses(
        (status = 200, description = "What was added", body = Added),
        (status = "4XX", description = "Refused (see code; 423 sealed)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn add_leaves(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    req: Result<Json<AddLeaves>, JsonRejection>,
) -> Result<Json<Added>, ApiError> {
    let caller = caller(&state, &headers, Permission::Cases).await?;
    let Json(req) = req?;
    on_vault(&state, move |v| {
        foia::add_leaves(v, &caller, &id, &req.leaves)
            .map(Json)
            .map_err(foia_error)
    })
    .await
}

/// Takes a record out of the review set, with its marks and redactions.
#[utoipa::path(delete, path = "/v1/foia/cases/{id}/items/{leaf}", tag = "foia",
    params(("id" = String, Path, description = "The case id"),
        ("leaf" = u64, Path, description = "The record's leaf index")),
    security(("api_token" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = "4XX", description = "Refused (see code; 423 sealed)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn remove_item(
    State(state): St,
    headers: HeaderMap,
    Path((id, leaf)): Path<(String, u64)>,
) -> Result<StatusCode, ApiError> {
    let caller = caller(&state, &headers, Permission::Cases).await?;
    on_vault(&state, move |v| {
        foia::remove_leaf(v, &caller, &id, leaf)
            .map(|()| StatusCode::NO_CONTENT)
            .map_err(foia_error)
    })
    .await
}

/// Marks a record of the review set responsive, not responsive or unreviewed.
#[utoipa::path(put, path = "/v1/foia/cases/{id}/items/{leaf}/review", tag = "foia",
    params(("id" = String, Path, description = "The case id"),
        ("leaf" = u64, Path, description = "The record's leaf index")),
    request_body = ReviewRequest,
    security(("api_token" = [])),
    responses(
        (status = 200, description = "The item as marked", body = CaseItem),
        (status = "4XX", description = "Refused (see code; 423 sealed)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn review(
    State(state): St,
    headers: HeaderMap,
    Path((id, leaf)): Path<(String, u64)>,
    req: Result<Json<ReviewRequest>, JsonRejection>,
) -> Result<Json<CaseItem>, ApiError> {
    let caller = caller(&state, &headers, Permission::Cases).await?;
    let Json(req) = req?;
    on_vault(&state, move |v| {
        foia::review(v, &caller, &id, leaf, req.mark)
            .map(Json)
            .map_err(foia_error)
    })
    .await
}

/// Redacts a span of a record's text, a piece of its metadata, a participant's name in it,
/// or the whole record, under an exemption.
#[utoipa::path(post, path = "/v1/foia/cases/{id}/items/{leaf}/redactions", tag = "foia",
    params(("id" = String, Path, description = "The case id"),
        ("leaf" = u64, Path, description = "The record's leaf index")),
    request_body = RedactRequest,
    security(("api_token" = [])),
    responses(
        (status = 201, description = "The redaction (merged with any it overlapped)", body = Redaction),
        (status = "4XX", description = "Refused (see code; 423 sealed)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn redact(
    State(state): St,
    headers: HeaderMap,
    Path((id, leaf)): Path<(String, u64)>,
    req: Result<Json<RedactRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Redaction>), ApiError> {
    let caller = caller(&state, &headers, Permission::Cases).await?;
    let Json(req) = req?;
    on_vault(&state, move |v| {
        foia::redact(v, &caller, &id, leaf, req.exemption, req.target)
            .map(|r| (StatusCode::CREATED, Json(r)))
            .map_err(foia_error)
    })
    .await
}

/// Redacts a person's name in every record of the case where it appears.
#[utoipa::path(post, path = "/v1/foia/cases/{id}/names", tag = "foia",
    params(("id" = String, Path, description = "The case id")),
    request_body = RedactName,
    security(("api_token" = [])),
    responses(
        (status = 201, description = "The case-wide redaction", body = NameRedaction),
        (status = "4XX", description = "Refused (see code; 423 sealed)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn redact_name(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    req: Result<Json<RedactName>, JsonRejection>,
) -> Result<(StatusCode, Json<NameRedaction>), ApiError> {
    let caller = caller(&state, &headers, Permission::Cases).await?;
    let Json(req) = req?;
    on_vault(&state, move |v| {
        foia::redact_name(v, &caller, &id, &req.user, req.exemption)
            .map(|r| (StatusCode::CREATED, Json(r)))
            .map_err(foia_error)
    })
    .await
}

/// Removes a redaction (a record's or a case-wide name's) by its number.
#[utoipa::path(delete, path = "/v1/foia/cases/{id}/redactions/{redaction}", tag = "foia",
    params(("id" = String, Path, description = "The case id"),
        ("redaction" = u64, Path, description = "The redaction's number")),
    security(("api_token" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = "4XX", description = "Refused (see code; 423 sealed)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn remove_redaction(
    State(state): St,
    headers: HeaderMap,
    Path((id, redaction)): Path<(String, u64)>,
) -> Result<StatusCode, ApiError> {
    let caller = caller(&state, &headers, Permission::Cases).await?;
    on_vault(&state, move |v| {
        foia::remove_redaction(v, &caller, &id, redaction)
            .map(|()| StatusCode::NO_CONTENT)
            .map_err(foia_error)
    })
    .await
}

/// Starts a production of the case's responsive records; poll its progress, then download.
#[utoipa::path(post, path = "/v1/foia/cases/{id}/productions", tag = "foia",
    params(("id" = String, Path, description = "The case id")),
    request_body = StartProduction,
    security(("api_token" = [])),
    responses(
        (status = 202, description = "Started", body = ProductionJob),
        (status = "4XX", description = "Refused (see code; 423 sealed)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn start_production(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    req: Result<Json<StartProduction>, JsonRejection>,
) -> Result<(StatusCode, Json<ProductionJob>), ApiError> {
    let caller = caller(&state, &headers, Permission::Produce).await?;
    let Json(req) = req?;
    let settings = state.settings.clone();
    let (job, plan) = on_vault(&state, move |v| {
        jobs::start(v, &caller, &settings, &id, &req).map_err(foia_error)
    })
    .await?;
    jobs::run(state.vault.clone(), plan);
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// A production's progress.
#[utoipa::path(get, path = "/v1/foia/cases/{id}/productions/{job}", tag = "foia",
    params(("id" = String, Path, description = "The case id"),
        ("job" = String, Path, description = "The production job")),
    security(("api_token" = [])),
    responses(
        (status = 200, description = "Its progress", body = ProductionJob),
        (status = "4XX", description = "Refused (see code; 423 sealed)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn production_status(
    State(state): St,
    headers: HeaderMap,
    Path((id, job)): Path<(String, String)>,
) -> Result<Json<ProductionJob>, ApiError> {
    let caller = caller(&state, &headers, Permission::Produce).await?;
    on_vault(&state, move |v| {
        jobs::status(v, &caller, &id, &job)
            .map(Json)
            .map_err(foia_error)
    })
    .await
}

/// The finished production directory as a zip, once (it is then forgotten).
#[utoipa::path(get, path = "/v1/foia/cases/{id}/productions/{job}/download", tag = "foia",
    params(("id" = String, Path, description = "The case id"),
        ("job" = String, Path, description = "The production job")),
    security(("api_token" = [])),
    responses(
        (status = 200, description = "The production, zipped", content_type = "application/zip", body = Vec<u8>),
        (status = "4XX", description = "Refused (see code; 423 sealed)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn download_production(
    State(state): St,
    headers: HeaderMap,
    Path((id, job)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let caller = caller(&state, &headers, Permission::Produce).await?;
    let name = format!(
        "attachment; filename=\"{}-production.zip\"",
        id.replace('"', "")
    );
    let zip = on_vault(&state, move |v| {
        jobs::download(v, &caller, &id, &job).map_err(foia_error)
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (header::CONTENT_DISPOSITION, name),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        zip,
    )
        .into_response())
}
