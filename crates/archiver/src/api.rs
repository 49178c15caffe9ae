//! The records office's API, on loopback, behind the records-officer token. Every access is
//! itself a leaf of the tamper-evident log.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vellum_archive::Leaf;
use vellum_client::ChatEvent;
use vellum_records::UnsealProgress;

use crate::retention::{active_holds, Hold};
use crate::sink::reference;
use crate::ArchiverState;

type St = State<Arc<ArchiverState>>;

use vellum_http::{codes, ApiError};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn log_access(state: &ArchiverState, action: &str, detail: &str) {
    let mut archive = state.archive.lock().unwrap_or_else(|p| p.into_inner());
    let leaf = Leaf::Access {
        time: now_ms(),
        action: action.into(),
        detail: detail.into(),
    };
    if let Err(e) = archive.append(leaf) {
        tracing::error!(error = %e, "cannot log an archive access");
    }
}

fn authorize(state: &ArchiverState, headers: &HeaderMap) -> Result<(), ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                codes::UNAUTHENTICATED,
                "records-officer token required",
            )
        })?;
    let hash: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
    if token.trim().is_empty() || hash != state.token_hash {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            codes::FORBIDDEN,
            "invalid records-officer token",
        ));
    }
    *state
        .last_activity
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Instant::now();
    Ok(())
}

pub fn app(state: Arc<ArchiverState>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/unseal", post(unseal))
        .route("/v1/seal", post(seal))
        .route("/v1/search", get(search))
        .route("/v1/checkpoint", get(checkpoint))
        .route("/v1/holds", get(list_holds).post(create_hold))
        .route("/v1/holds/{name}", axum::routing::delete(release_hold))
        .route("/v1/dispose", post(dispose))
        .fallback(vellum_http::not_found)
        .method_not_allowed_fallback(vellum_http::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .layer(axum::middleware::from_fn(vellum_http::json_errors))
        .with_state(state)
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    pub sealed: bool,
    pub shares_received: usize,
    pub shares_needed: usize,
    pub log_size: u64,
    pub records: u64,
    pub checkpoint_size: Option<u64>,
}

fn current_status(state: &ArchiverState) -> Status {
    let sealed = state
        .secret
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_none();
    let unsealer = state.unsealer.lock().unwrap_or_else(|p| p.into_inner());
    let archive = state.archive.lock().unwrap_or_else(|p| p.into_inner());
    Status {
        sealed,
        shares_received: if sealed {
            unsealer.have()
        } else {
            unsealer.need()
        },
        shares_needed: unsealer.need(),
        log_size: archive.size(),
        records: archive.records().count() as u64,
        checkpoint_size: archive
            .latest_checkpoint()
            .ok()
            .flatten()
            .map(|(size, _)| size),
    }
}

async fn status(State(state): St, headers: HeaderMap) -> Result<Json<Status>, ApiError> {
    authorize(&state, &headers)?;
    Ok(Json(current_status(&state)))
}

#[derive(Deserialize)]
struct UnsealRequest {
    share: String,
}

async fn unseal(
    State(state): St,
    headers: HeaderMap,
    req: Result<Json<UnsealRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Status>, ApiError> {
    authorize(&state, &headers)?;
    let Json(req) =
        req.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, e.body_text()))?;
    if state
        .secret
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_some()
    {
        return Ok(Json(current_status(&state)));
    }
    let progress = state
        .unsealer
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .add(&req.share);
    match progress {
        Ok(UnsealProgress::Unsealed(secret)) => {
            *state.secret.lock().unwrap_or_else(|p| p.into_inner()) = Some(secret);
            log_access(&state, "unseal", "the records key was reassembled");
        }
        Ok(UnsealProgress::NeedMore { .. }) => {}
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                codes::BAD_SHARE,
                e.to_string(),
            ))
        }
    }
    Ok(Json(current_status(&state)))
}

async fn seal(State(state): St, headers: HeaderMap) -> Result<Json<Status>, ApiError> {
    authorize(&state, &headers)?;
    if state
        .secret
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .is_some()
    {
        log_access(&state, "seal", "sealed by the records office");
    }
    Ok(Json(current_status(&state)))
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    pub q: String,
    pub chat: Option<String>,
    pub participant: Option<String>,
    /// Unix ms, inclusive.
    pub from: Option<i64>,
    pub to: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Hit {
    pub leaf: u64,
    pub event: ChatEvent,
}

impl SearchQuery {
    fn matches(&self, e: &ChatEvent) -> bool {
        let text_hit = self.q.is_empty()
            || e.text
                .as_deref()
                .is_some_and(|t| t.to_lowercase().contains(&self.q.to_lowercase()));
        let chat_hit = self
            .chat
            .as_deref()
            .is_none_or(|c| c == e.chat_id || e.chat_title.as_deref() == Some(c));
        let who_hit = self
            .participant
            .as_deref()
            .is_none_or(|u| e.sender_user == u || e.recipients.iter().any(|r| r.user == u));
        let when = e.sent_at.min(e.received_at);
        text_hit
            && chat_hit
            && who_hit
            && self.from.is_none_or(|f| when >= f)
            && self.to.is_none_or(|t| when <= t)
    }
}

async fn search(
    State(state): St,
    headers: HeaderMap,
    Query(query): Query<SearchQuery>,
) -> Result<Json<Vec<Hit>>, ApiError> {
    authorize(&state, &headers)?;
    let hits = {
        let secret = state.secret.lock().unwrap_or_else(|p| p.into_inner());
        let Some(secret) = secret.as_ref() else {
            return Err(ApiError::new(
                StatusCode::LOCKED,
                codes::SEALED,
                "the archive is sealed: k custodians must unseal it first",
            ));
        };
        let archive = state.archive.lock().unwrap_or_else(|p| p.into_inner());
        let mut hits = Vec::new();
        for (leaf, disposed) in archive.records() {
            if disposed {
                continue;
            }
            let Ok(Some(record)) = archive.record(leaf) else {
                continue;
            };
            let Ok(Leaf::Record { reference: r, .. }) = archive.leaf(leaf) else {
                continue;
            };
            let Ok(plain) = vellum_records::open(secret, r.as_bytes(), &record) else {
                tracing::error!(leaf, "a record does not open under the records key");
                continue;
            };
            let Ok(event) = serde_json::from_slice::<ChatEvent>(&plain) else {
                continue;
            };
            debug_assert_eq!(reference(&event.chat_id, event.seq), r);
            if query.matches(&event) {
                hits.push(Hit { leaf, event });
            }
        }
        hits
    };
    // The log is public to auditors: it shows that a search ran, when, and how much it
    // found, and only a digest of its terms (words, chat, custodian, dates), which may
    // themselves be sensitive. The records office keeps its own case file of queries.
    let terms = serde_json::to_vec(&query).unwrap_or_default();
    let digest = hex::encode(&Sha256::digest(&terms)[..16]);
    let detail = format!("query sha256:{digest} -> {} records", hits.len());
    log_access(&state, "search", &detail);
    Ok(Json(hits))
}

async fn checkpoint(State(state): St, headers: HeaderMap) -> Result<String, ApiError> {
    authorize(&state, &headers)?;
    let mut archive = state.archive.lock().unwrap_or_else(|p| p.into_inner());
    archive.checkpoint().map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL,
            e.to_string(),
        )
    })
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        codes::INTERNAL,
        e.to_string(),
    )
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, message.into())
}

async fn list_holds(State(state): St, headers: HeaderMap) -> Result<Json<Vec<Hold>>, ApiError> {
    authorize(&state, &headers)?;
    let archive = state.archive.lock().unwrap_or_else(|p| p.into_inner());
    Ok(Json(active_holds(&archive).map_err(internal)?))
}

async fn create_hold(
    State(state): St,
    headers: HeaderMap,
    req: Result<Json<Hold>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Hold>), ApiError> {
    authorize(&state, &headers)?;
    let Json(hold) = req.map_err(|e| bad_request(e.body_text()))?;
    if hold.name.is_empty() || hold.name.len() > 100 || hold.name.contains('/') {
        return Err(bad_request(
            "a hold name is 1 to 100 characters, without '/'",
        ));
    }
    if hold.from.zip(hold.to).is_some_and(|(f, t)| f > t) {
        return Err(bad_request("the hold's range ends before it begins"));
    }
    let mut archive = state.archive.lock().unwrap_or_else(|p| p.into_inner());
    if active_holds(&archive)
        .map_err(internal)?
        .iter()
        .any(|h| h.name == hold.name)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            codes::CONFLICT,
            format!("a hold named {:?} is already in force", hold.name),
        ));
    }
    let leaf = Leaf::Hold {
        time: now_ms(),
        name: hold.name.clone(),
        custodian: hold.custodian.clone(),
        chat: hold.chat.clone(),
        from: hold.from,
        to: hold.to,
    };
    archive.append(leaf).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL,
            e.to_string(),
        )
    })?;
    Ok((StatusCode::CREATED, Json(hold)))
}

async fn release_hold(
    State(state): St,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    authorize(&state, &headers)?;
    let mut archive = state.archive.lock().unwrap_or_else(|p| p.into_inner());
    if !active_holds(&archive)
        .map_err(internal)?
        .iter()
        .any(|h| h.name == name)
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            codes::NOT_FOUND,
            format!("no hold named {name:?} is in force"),
        ));
    }
    archive
        .append(Leaf::Release {
            time: now_ms(),
            name,
        })
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                codes::INTERNAL,
                e.to_string(),
            )
        })?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize)]
struct DisposeRequest {
    #[serde(default)]
    dry_run: bool,
}

/// A record past its retention period: disposed, or kept by a hold.
#[derive(Debug, Serialize, Deserialize)]
pub struct Disposal {
    pub leaf: u64,
    pub chat_id: String,
    pub chat_title: Option<String>,
    pub schedule: String,
    pub held_by: Option<String>,
    pub disposed: bool,
}

async fn dispose(
    State(state): St,
    headers: HeaderMap,
    req: Result<Json<DisposeRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Vec<Disposal>>, ApiError> {
    authorize(&state, &headers)?;
    let Json(req) = req.map_err(|e| bad_request(e.body_text()))?;
    let now = now_ms();
    let secret = state.secret.lock().unwrap_or_else(|p| p.into_inner());
    let Some(secret) = secret.as_ref() else {
        return Err(ApiError::new(
            StatusCode::LOCKED,
            codes::SEALED,
            "disposition reads each record's metadata: unseal first",
        ));
    };
    let mut archive = state.archive.lock().unwrap_or_else(|p| p.into_inner());
    let holds = active_holds(&archive).map_err(internal)?;
    let mut out = Vec::new();
    let candidates: Vec<u64> = archive
        .records()
        .filter(|(_, disposed)| !disposed)
        .map(|(leaf, _)| leaf)
        .collect();
    let mut events = Vec::with_capacity(candidates.len());
    for leaf in candidates {
        let (Ok(Some(record)), Ok(Leaf::Record { reference, .. })) =
            (archive.record(leaf), archive.leaf(leaf))
        else {
            continue;
        };
        match vellum_records::open(secret, reference.as_bytes(), &record)
            .map_err(|e| e.to_string())
            .and_then(|p| serde_json::from_slice::<ChatEvent>(&p).map_err(|e| e.to_string()))
        {
            Ok(event) => events.push((leaf, event)),
            Err(e) => {
                tracing::error!(leaf, error = %e, "a record does not open under the records key")
            }
        }
    }
    // A chat's schedule follows its title, which its first records (joining) may predate.
    let titles: std::collections::HashMap<String, String> = events
        .iter()
        .filter_map(|(_, e)| e.chat_title.clone().map(|t| (e.chat_id.clone(), t)))
        .collect();
    for (leaf, mut event) in events {
        if event.chat_title.is_none() {
            event.chat_title = titles.get(&event.chat_id).cloned();
        }
        let (schedule, retention) = state.schedules.for_event(&event);
        let Some(retention) = retention else { continue };
        if event.received_at.saturating_add(retention) > now {
            continue;
        }
        let held_by = holds
            .iter()
            .find(|h| h.covers(&event))
            .map(|h| h.name.clone());
        let disposed = held_by.is_none() && !req.dry_run;
        if disposed {
            archive.dispose(leaf, &schedule, now).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    codes::INTERNAL,
                    e.to_string(),
                )
            })?;
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
    drop(archive);
    let done = out.iter().filter(|d| d.disposed).count();
    let held = out.iter().filter(|d| d.held_by.is_some()).count();
    let action = if req.dry_run {
        "dispose (dry run)"
    } else {
        "dispose"
    };
    log_access(
        &state,
        action,
        &format!("{done} disposed, {held} kept by holds"),
    );
    Ok(Json(out))
}
