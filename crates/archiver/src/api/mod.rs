//! The records office's API, on loopback, behind the records-officer token. Every access is
//! itself a leaf of the tamper-evident log.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::{Json, Router};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vellum_archive::Leaf;
use vellum_record::api::office::{Permission, Role};
use vellum_record::api::search::{SearchRequest, SearchResults};
use vellum_record::api::{Disposal, DisposeRequest, Status, UnsealRequest};
use vellum_record::Record;
use vellum_records::UnsealProgress;

use crate::office::Caller;

pub(crate) mod accounts;
pub(crate) mod foia;
pub(crate) mod holds;
pub(crate) mod retention;

use crate::actor::Vault;
use crate::retention::{active_holds, retention_start};
use crate::ArchiverState;

pub(crate) type St = State<Arc<ArchiverState>>;

use vellum_http::{codes, ApiError};

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Appends an access leaf (on the actor, which owns the archive).
pub fn log_access(vault: &mut Vault, action: &str, detail: &str) {
    let leaf = Leaf::Access {
        time: now_ms(),
        action: action.into(),
        detail: detail.into(),
    };
    if let Err(e) = vault.archive.append(leaf) {
        tracing::error!(error = %e, "cannot log an archive access");
    }
}

/// The actor stopped: nothing can be served.
fn stopped(e: crate::Error) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        codes::INTERNAL,
        e.to_string(),
    )
}

/// Runs `f` on the archive's actor.
pub(crate) async fn on_vault<R: Send + 'static>(
    state: &ArchiverState,
    f: impl FnOnce(&mut Vault) -> Result<R, ApiError> + Send + 'static,
) -> Result<R, ApiError> {
    state.vault.call(f).await.map_err(stopped)?
}

/// Who is calling, if their role allows `permission`: the account whose API token is the
/// request's bearer token. Every route asks this first; the console asks the same of its
/// session.
pub(crate) async fn caller(
    state: &ArchiverState,
    headers: &HeaderMap,
    permission: Permission,
) -> Result<Caller, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                codes::UNAUTHENTICATED,
                "an account's API token is required (the first officer's is DATA/records-token)",
            )
        })?;
    let hash = crate::office::sha256(token);
    let caller = on_vault(state, move |v| {
        let caller = v.office.caller_by_token(&hash).map_err(internal)?;
        if caller.is_some() {
            v.last_activity = Instant::now();
        }
        Ok(caller)
    })
    .await?
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            codes::FORBIDDEN,
            "invalid or disabled API token",
        )
    })?;
    permitted(&caller, permission)?;
    Ok(caller)
}

/// 403 unless `caller`'s role allows `permission`.
pub(crate) fn permitted(caller: &Caller, permission: Permission) -> Result<(), ApiError> {
    if caller.role.allows(permission) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        codes::FORBIDDEN,
        format!(
            "{} has the role {}, which may not do this",
            caller.name, caller.role
        ),
    ))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vellum records API",
        description = "Served by the archiver. Requests carry `Authorization: Bearer <API token>` \
            of a records-office account (the first officer's is `DATA/records-token`); what a \
            request may do follows the account's role. Every access is a leaf of the \
            tamper-evident log. Every error is a JSON `{code, message}`."
    ),
    modifiers(&SecuritySchemes),
    components(schemas(ErrorBody)),
    tags((name = "archive"), (name = "accounts"), (name = "search"), (name = "holds"),
        (name = "retention"), (name = "foia"), (name = "audit"), (name = "public"))
)]
struct ApiDoc;

/// The `{code, message}` body of every error.
pub type ErrorBody = vellum_wire::ApiError;

/// The security scheme name the operations' `security(...)` use.
pub const API_TOKEN: &str = "api_token";

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                API_TOKEN,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("a records-office account's API token"))
                        .build(),
                ),
            );
    }
}

/// Every route with its documentation, before state is attached.
pub fn router() -> OpenApiRouter<Arc<ArchiverState>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(status))
        .routes(routes!(unseal))
        .routes(routes!(seal))
        .routes(routes!(search))
        .routes(routes!(checkpoint))
        .routes(routes!(holds::list, holds::create))
        .routes(routes!(holds::release))
        .routes(routes!(dispose))
        .routes(routes!(retention::list, retention::define))
        .routes(routes!(retention::assign))
        .routes(routes!(retention::audit))
        .routes(routes!(retention::chats))
        .routes(routes!(accounts::create, accounts::list))
        .routes(routes!(accounts::disable))
        .routes(routes!(accounts::whoami))
        .routes(routes!(foia::list_cases, foia::create_case))
        .routes(routes!(foia::show_case, foia::update_case))
        .routes(routes!(foia::add_note))
        .routes(routes!(foia::add_items))
        .routes(routes!(foia::add_leaves))
        .routes(routes!(foia::remove_item))
        .routes(routes!(foia::review))
        .routes(routes!(foia::redact))
        .routes(routes!(foia::redact_name))
        .routes(routes!(foia::remove_redaction))
        .routes(routes!(foia::start_production))
        .routes(routes!(foia::production_status))
        .routes(routes!(foia::download_production))
        .routes(routes!(public_checkpoint))
        .routes(routes!(openapi_json))
}

/// The records API's OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    router().split_for_parts().1
}

pub fn app(state: Arc<ArchiverState>) -> Router {
    let (router, _) = router().split_for_parts();
    let console = crate::console::router(state.clone())
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024));
    router
        // C2SP tlog-tiles paths (a wildcard, which OpenAPI cannot express; the spec is C2SP's).
        .route("/tile/{*path}", axum::routing::get(public_tile))
        .fallback(vellum_http::not_found)
        .method_not_allowed_fallback(vellum_http::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .layer(axum::middleware::from_fn(vellum_http::json_errors))
        // The console answers in HTML, its errors included: merged outside the JSON layer.
        .merge(console)
        .with_state(state)
}

/// The OpenAPI 3.1 document of this API, generated from the routes it serves.
#[utoipa::path(get, path = "/openapi.json", tag = "public",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}

pub fn current_status(vault: &Vault) -> Status {
    let sealed = vault.secret.is_none();
    Status {
        sealed,
        shares_received: if sealed {
            vault.unsealer.have()
        } else {
            vault.unsealer.need()
        },
        shares_needed: vault.unsealer.need(),
        log_size: vault.archive.size(),
        records: vault.archive.records().count() as u64,
        checkpoint_size: vault
            .archive
            .latest_checkpoint()
            .ok()
            .flatten()
            .map(|(size, _)| size),
        paused: vault
            .paused
            .as_ref()
            .or(vault.checkpoint_failure.as_ref())
            .map(|why| format!("paused: {why}")),
        binding_serial: crate::binding::newest_serial(vault),
        binding_on_server: vault.binder.is_some() && crate::binding::current_key_on_server(vault),
        // The index goes with the key; the actor drops its memory after the job that sealed.
        index: if sealed {
            None
        } else {
            crate::search::progress(vault)
        },
    }
}

#[utoipa::path(get, path = "/v1/status", tag = "archive",
    security(("api_token" = [])),
    responses(
        (status = 200, description = "Sealed or not, sizes", body = Status),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
async fn status(State(state): St, headers: HeaderMap) -> Result<Json<Status>, ApiError> {
    caller(&state, &headers, Permission::Status).await?;
    on_vault(&state, |v| Ok(Json(current_status(v)))).await
}

#[utoipa::path(post, path = "/v1/unseal", tag = "archive",
    request_body = UnsealRequest,
    security(("api_token" = [])),
    responses(
        (status = 200, description = "Progress of the unseal", body = Status),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
async fn unseal(
    State(state): St,
    headers: HeaderMap,
    req: Result<Json<UnsealRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Status>, ApiError> {
    let caller = caller(&state, &headers, Permission::Unseal).await?;
    let Json(req) = req?;
    Ok(Json(unseal_as(&state, caller, req).await?))
}

/// Hands in `caller`'s share (the API's and the console's unseal).
pub(crate) async fn unseal_as(
    state: &ArchiverState,
    caller: Caller,
    req: UnsealRequest,
) -> Result<Status, ApiError> {
    // Reassembling and checking the key is CPU work: the actor does it.
    on_vault(state, move |v| {
        if v.secret.is_some() {
            // Unsealed already; a binding that failed to be written then is retried.
            if let Err(e) = crate::binding::bind(v) {
                tracing::error!(error = %e, "the archiver could not be bound");
            }
            return Ok(current_status(v));
        }
        if caller.role == Role::Keyholder && v.unseal_contributors.contains(&caller.name) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                codes::CONFLICT,
                format!(
                    "{} has handed in a share already: another keyholder must hand in the next",
                    caller.name
                ),
            ));
        }
        match v.unsealer.add(&req.share) {
            Ok(UnsealProgress::Unsealed(secret)) => {
                v.secret = Some(secret);
                v.unseal_contributors.clear();
                log_access(
                    v,
                    "unseal",
                    &format!(
                        "{} handed in the last share: the records key was reassembled",
                        caller.name
                    ),
                );
                // The custodians' shares are assembled: the moment to bind this archiver.
                if let Err(e) = crate::binding::bind(v) {
                    tracing::error!(error = %e, "the archiver could not be bound");
                    return Err(ApiError::new(
                        StatusCode::INSUFFICIENT_STORAGE,
                        codes::INSUFFICIENT_STORAGE,
                        format!("unsealed, but the binding could not be written: {e}"),
                    ));
                }
            }
            Ok(UnsealProgress::NeedMore { .. }) => {
                if caller.role == Role::Keyholder {
                    v.unseal_contributors.push(caller.name.clone());
                }
                log_access(v, "unseal", &format!("{} handed in a share", caller.name));
            }
            Err(e) => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    codes::BAD_SHARE,
                    e.to_string(),
                ))
            }
        }
        Ok(current_status(v))
    })
    .await
}

#[utoipa::path(post, path = "/v1/seal", tag = "archive",
    security(("api_token" = [])),
    responses(
        (status = 200, description = "Sealed", body = Status),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
async fn seal(State(state): St, headers: HeaderMap) -> Result<Json<Status>, ApiError> {
    let caller = caller(&state, &headers, Permission::Seal).await?;
    Ok(Json(seal_as(&state, caller).await?))
}

/// Forgets the records key (the API's and the console's seal).
pub(crate) async fn seal_as(state: &ArchiverState, caller: Caller) -> Result<Status, ApiError> {
    on_vault(state, move |v| {
        if v.secret.take().is_some() {
            v.unseal_contributors.clear();
            v.productions.clear();
            log_access(v, "seal", &format!("sealed by {}", caller.name));
        }
        Ok(current_status(v))
    })
    .await
}

pub(crate) fn sealed_error(message: &str) -> ApiError {
    ApiError::new(StatusCode::LOCKED, codes::SEALED, message)
}

/// A record opened in memory: its leaf, when the archive took it in (the leaf's time, Unix
/// ms), and the record.
pub(crate) struct Opened {
    pub leaf: u64,
    pub archived_at: i64,
    pub event: Record,
}

/// Every record not disposed, decrypted in memory. `None` while sealed.
pub(crate) fn open_records(vault: &Vault) -> Option<Vec<Opened>> {
    let secret = vault.secret.as_ref()?;
    let mut out = Vec::new();
    for (leaf, disposed) in vault.archive.records() {
        if disposed {
            continue;
        }
        match open_record(&vault.archive, secret, leaf) {
            Ok(Some(opened)) => out.push(opened),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(leaf, error = %e, "a record does not open under the records key")
            }
        }
    }
    Some(out)
}

/// Record `leaf`, decrypted in memory; `None` once disposed.
pub(crate) fn open_record(
    archive: &vellum_archive::Archive,
    secret: &vellum_records::RecordsSecret,
    leaf: u64,
) -> Result<Option<Opened>, String> {
    let Some(sealed) = archive.record(leaf).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let Leaf::Record {
        reference, time, ..
    } = archive.leaf(leaf).map_err(|e| e.to_string())?
    else {
        return Err(format!("leaf {leaf} is not a record"));
    };
    let event = vellum_records::open(secret, reference.as_bytes(), &sealed)
        .map_err(|e| e.to_string())
        .and_then(|p| Record::decode(&p).map_err(|e| e.to_string()))?;
    debug_assert_eq!(event.reference(), reference);
    Ok(Some(Opened {
        leaf,
        archived_at: time,
        event,
    }))
}

/// A full-text search of the unsealed archive (see `crate::search` for the query language,
/// the filters and catch-up after an unseal).
#[utoipa::path(post, path = "/v1/search", tag = "search",
    request_body = SearchRequest,
    security(("api_token" = [])),
    responses(
        (status = 200, description = "Every match counted; the page asked for, in log order, with context", body = SearchResults),
        (status = 400, description = "Malformed query, filter, date or page; the range ends before it begins", body = ErrorBody),
        (status = 404, description = "A participant or chat the archive has no record of (unknown_user, unknown_chat)", body = ErrorBody),
        (status = 423, description = "Sealed", body = ErrorBody),
        (status = 503, description = "The index is catching up after the unseal (indexing); the message and GET /v1/status say how far", body = ErrorBody),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
async fn search(
    State(state): St,
    headers: HeaderMap,
    req: Result<Json<SearchRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<SearchResults>, ApiError> {
    let caller = caller(&state, &headers, Permission::ReadContent).await?;
    let Json(req) = req?;
    on_vault(&state, move |v| {
        let results = crate::search::run(v, &req)?;
        // The log is public to auditors: it shows that a search ran, who ran it, when, and
        // how much it found, and only a digest of its terms (words, participants, chats,
        // dates), which may themselves be sensitive.
        let digest = crate::search::query_digest(v, &req).unwrap_or_default();
        let detail = format!(
            "{} ran query hmac:{digest} -> {} records",
            caller.name, results.total
        );
        log_access(v, "search", &detail);
        Ok(Json(results))
    })
    .await
}

#[utoipa::path(get, path = "/v1/checkpoint", tag = "archive",
    security(("api_token" = [])),
    responses(
        (status = 200, description = "A newly signed checkpoint note", body = String, content_type = "text/plain"),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
async fn checkpoint(State(state): St, headers: HeaderMap) -> Result<String, ApiError> {
    caller(&state, &headers, Permission::Status).await?;
    on_vault(&state, |v| {
        crate::checkpoint(v).map_err(|why| {
            ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                codes::INSUFFICIENT_STORAGE,
                why,
            )
        })
    })
    .await
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        codes::INTERNAL,
        e.to_string(),
    )
}

pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, message)
}

#[utoipa::path(post, path = "/v1/dispose", tag = "retention",
    request_body = DisposeRequest,
    security(("api_token" = [])),
    responses(
        (status = 200, description = "Records past retention: disposed or held", body = Vec<Disposal>),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
async fn dispose(
    State(state): St,
    headers: HeaderMap,
    req: Result<Json<DisposeRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Vec<Disposal>>, ApiError> {
    let caller = caller(&state, &headers, Permission::ManageRetention).await?;
    let Json(req) = req?;
    on_vault(&state, move |v| {
        let now = now_ms();
        let Some(events) = open_records(v) else {
            return Err(sealed_error(
                "disposition reads each record's metadata: unseal first",
            ));
        };
        let holds = active_holds(&v.archive).map_err(internal)?;
        // A record in the review set of a case not closed is kept like a held one.
        let in_cases = crate::foia::leaves_in_open_cases(v).map_err(internal)?;
        let mut out = Vec::new();
        // A chat's schedule follows its title, which its first records (joining) may predate.
        let titles: std::collections::HashMap<String, String> = events
            .iter()
            .filter_map(|r| {
                let e = &r.event;
                e.chat_title.clone().map(|t| (e.chat_id.clone(), t))
            })
            .collect();
        for Opened {
            leaf,
            archived_at,
            mut event,
        } in events
        {
            if event.chat_title.is_none() {
                event.chat_title = titles.get(&event.chat_id).cloned();
            }
            let (schedule, retention) = v.schedules.for_event(&event);
            let Some(retention) = retention else { continue };
            if retention_start(&event, archived_at).saturating_add(retention) > now {
                continue;
            }
            let held_by = holds
                .iter()
                .find(|h| h.covers(&event, archived_at))
                .map(|h| h.name.clone())
                .or_else(|| in_cases.get(&leaf).cloned());
            let disposed = held_by.is_none() && !req.dry_run;
            if disposed {
                v.archive.dispose(leaf, &schedule, now).map_err(|e| {
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        codes::INTERNAL,
                        e.to_string(),
                    )
                })?;
                crate::search::disposed(v, leaf, &event.chat_id);
            }
            out.push(Disposal {
                leaf,
                chat_id: event.chat_id,
                chat_title: event.chat_title,
                schedule,
                held_by,
                disposed,
            });
        }
        let done = out.iter().filter(|d| d.disposed).count();
        let held = out.iter().filter(|d| d.held_by.is_some()).count();
        let action = if req.dry_run {
            "dispose (dry run)"
        } else {
            "dispose"
        };
        log_access(
            v,
            action,
            &format!(
                "{} ran it: {done} disposed, {held} kept by holds or open cases",
                caller.name
            ),
        );
        Ok(Json(out))
    })
    .await
}

/// C2SP tlog-tiles `<prefix>/checkpoint`: the latest signed checkpoint, for anyone. No token,
/// and a public read does not count as records-office activity (it never delays the idle
/// seal). It only reads: signing stays with the checkpoint interval.
#[utoipa::path(get, path = "/checkpoint", tag = "public",
    responses(
        (status = 200, description = "The latest signed checkpoint (C2SP tlog-tiles)", body = String, content_type = "text/plain"),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
async fn public_checkpoint(State(state): St) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let latest = on_vault(&state, |v| v.archive.latest_checkpoint().map_err(internal)).await?;
    let Some((_, note)) = latest else {
        return Err(ApiError::not_found("no checkpoint has been signed yet"));
    };
    // Mutable: the spec asks that it not be cached beyond a few seconds.
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        note,
    )
        .into_response())
}

/// C2SP tlog-tiles `<prefix>/tile/<L>/<N>[.p/<W>]`: hash tiles, for anyone, as far as the
/// latest checkpoint reaches. Entry bundles (`tile/entries/…`) are never served: record
/// leaves hold sealed bodies, hold leaves name people and chats, access leaves hold search
/// digests.
async fn public_tile(
    State(state): St,
    Path(path): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    use vellum_tlog::tiles::{encode_tile, Tile};
    if path == "entries" || path.starts_with("entries/") {
        return Err(ApiError::not_found(
            "entry bundles are not served: leaf contents are private",
        ));
    }
    let tile = Tile::parse_path(&format!("tile/{path}")).map_err(|e| bad_request(e.to_string()))?;
    let hashes = on_vault(&state, move |v| {
        let size = v
            .archive
            .latest_checkpoint()
            .map_err(internal)?
            .map_or(0, |(size, _)| size);
        // Only hashes a signed checkpoint commits to are published.
        if !tile.is_within(size) {
            return Err(ApiError::not_found(format!(
                "{} is not in the tree of the latest checkpoint ({size} leaves)",
                tile.path()
            )));
        }
        v.archive.tile(tile).map_err(internal)
    })
    .await?;
    // A tile's content never changes (a partial tile is a prefix of the full one).
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        encode_tile(&hashes),
    )
        .into_response())
}
