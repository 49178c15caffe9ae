//! The records office's API, on loopback, behind the records-officer token. Every access is
//! itself a leaf of the tamper-evident log.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use vellum_archive::Leaf;
use vellum_record::api::{Disposal, DisposeRequest, Hit, Hold, SearchQuery, Status, UnsealRequest};
use vellum_record::Record;
use vellum_records::UnsealProgress;

use crate::actor::Vault;
use crate::retention::active_holds;
use crate::ArchiverState;

type St = State<Arc<ArchiverState>>;

use vellum_http::{codes, ApiError};

fn now_ms() -> i64 {
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
async fn on_vault<R: Send + 'static>(
    state: &ArchiverState,
    f: impl FnOnce(&mut Vault) -> Result<R, ApiError> + Send + 'static,
) -> Result<R, ApiError> {
    state.vault.call(f).await.map_err(stopped)?
}

async fn authorize(state: &ArchiverState, headers: &HeaderMap) -> Result<(), ApiError> {
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
    on_vault(state, |v| {
        v.last_activity = Instant::now();
        Ok(())
    })
    .await
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
        .route("/checkpoint", get(public_checkpoint))
        .route("/tile/{*path}", get(public_tile))
        .fallback(vellum_http::not_found)
        .method_not_allowed_fallback(vellum_http::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .layer(axum::middleware::from_fn(vellum_http::json_errors))
        .with_state(state)
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
    }
}

async fn status(State(state): St, headers: HeaderMap) -> Result<Json<Status>, ApiError> {
    authorize(&state, &headers).await?;
    on_vault(&state, |v| Ok(Json(current_status(v)))).await
}

async fn unseal(
    State(state): St,
    headers: HeaderMap,
    req: Result<Json<UnsealRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Status>, ApiError> {
    authorize(&state, &headers).await?;
    let Json(req) = req?;
    // Reassembling and checking the key is CPU work: the actor does it.
    on_vault(&state, move |v| {
        if v.secret.is_some() {
            return Ok(Json(current_status(v)));
        }
        match v.unsealer.add(&req.share) {
            Ok(UnsealProgress::Unsealed(secret)) => {
                v.secret = Some(secret);
                log_access(v, "unseal", "the records key was reassembled");
                crate::publish::bind_on_unseal(v);
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
        Ok(Json(current_status(v)))
    })
    .await
}

async fn seal(State(state): St, headers: HeaderMap) -> Result<Json<Status>, ApiError> {
    authorize(&state, &headers).await?;
    on_vault(&state, |v| {
        if v.secret.take().is_some() {
            log_access(v, "seal", "sealed by the records office");
        }
        Ok(Json(current_status(v)))
    })
    .await
}

fn sealed_error(message: &str) -> ApiError {
    ApiError::new(StatusCode::LOCKED, codes::SEALED, message)
}

/// Every record not disposed, decrypted in memory. `None` while sealed.
fn open_records(vault: &Vault) -> Option<Vec<(u64, Record)>> {
    let secret = vault.secret.as_ref()?;
    let archive = &vault.archive;
    let mut out = Vec::new();
    for (leaf, disposed) in archive.records() {
        if disposed {
            continue;
        }
        let (Ok(Some(record)), Ok(Leaf::Record { reference, .. })) =
            (archive.record(leaf), archive.leaf(leaf))
        else {
            continue;
        };
        match vellum_records::open(secret, reference.as_bytes(), &record)
            .map_err(|e| e.to_string())
            .and_then(|p| Record::decode(&p).map_err(|e| e.to_string()))
        {
            Ok(event) => {
                debug_assert_eq!(event.reference(), reference);
                out.push((leaf, event))
            }
            Err(e) => {
                tracing::error!(leaf, error = %e, "a record does not open under the records key")
            }
        }
    }
    Some(out)
}

async fn search(
    State(state): St,
    headers: HeaderMap,
    Query(query): Query<SearchQuery>,
) -> Result<Json<Vec<Hit>>, ApiError> {
    authorize(&state, &headers).await?;
    on_vault(&state, move |v| {
        let Some(records) = open_records(v) else {
            return Err(sealed_error(
                "the archive is sealed: k custodians must unseal it first",
            ));
        };
        let hits: Vec<Hit> = records
            .into_iter()
            .filter(|(_, event)| query.matches(event))
            .map(|(leaf, event)| Hit { leaf, event })
            .collect();
        // The log is public to auditors: it shows that a search ran, when, and how much it
        // found, and only a digest of its terms (words, chat, custodian, dates), which may
        // themselves be sensitive. The records office keeps its own case file of queries.
        let terms = serde_json::to_vec(&query).unwrap_or_default();
        let digest = hex::encode(&Sha256::digest(&terms)[..16]);
        let detail = format!("query sha256:{digest} -> {} records", hits.len());
        log_access(v, "search", &detail);
        Ok(Json(hits))
    })
    .await
}

async fn checkpoint(State(state): St, headers: HeaderMap) -> Result<String, ApiError> {
    authorize(&state, &headers).await?;
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

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        codes::INTERNAL,
        e.to_string(),
    )
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, message)
}

async fn list_holds(State(state): St, headers: HeaderMap) -> Result<Json<Vec<Hold>>, ApiError> {
    authorize(&state, &headers).await?;
    on_vault(&state, |v| {
        Ok(Json(active_holds(&v.archive).map_err(internal)?))
    })
    .await
}

async fn create_hold(
    State(state): St,
    headers: HeaderMap,
    req: Result<Json<Hold>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Hold>), ApiError> {
    authorize(&state, &headers).await?;
    let Json(hold) = req?;
    if hold.name.is_empty() || hold.name.len() > 100 || hold.name.contains('/') {
        return Err(bad_request(
            "a hold name is 1 to 100 characters, without '/'",
        ));
    }
    if hold.from.zip(hold.to).is_some_and(|(f, t)| f > t) {
        return Err(bad_request("the hold's range ends before it begins"));
    }
    on_vault(&state, move |v| {
        if active_holds(&v.archive)
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
        v.archive.append(leaf).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                codes::INTERNAL,
                e.to_string(),
            )
        })?;
        Ok((StatusCode::CREATED, Json(hold)))
    })
    .await
}

async fn release_hold(
    State(state): St,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    authorize(&state, &headers).await?;
    on_vault(&state, move |v| {
        if !active_holds(&v.archive)
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
        v.archive
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
    })
    .await
}

async fn dispose(
    State(state): St,
    headers: HeaderMap,
    req: Result<Json<DisposeRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Vec<Disposal>>, ApiError> {
    authorize(&state, &headers).await?;
    let Json(req) = req?;
    let schedules = state.clone();
    on_vault(&state, move |v| {
        let now = now_ms();
        let Some(events) = open_records(v) else {
            return Err(sealed_error(
                "disposition reads each record's metadata: unseal first",
            ));
        };
        let holds = active_holds(&v.archive).map_err(internal)?;
        let mut out = Vec::new();
        // A chat's schedule follows its title, which its first records (joining) may predate.
        let titles: std::collections::HashMap<String, String> = events
            .iter()
            .filter_map(|(_, e)| e.chat_title.clone().map(|t| (e.chat_id.clone(), t)))
            .collect();
        for (leaf, mut event) in events {
            if event.chat_title.is_none() {
                event.chat_title = titles.get(&event.chat_id).cloned();
            }
            let (schedule, retention) = schedules.schedules.for_event(&event);
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
                v.archive.dispose(leaf, &schedule, now).map_err(|e| {
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
        let done = out.iter().filter(|d| d.disposed).count();
        let held = out.iter().filter(|d| d.held_by.is_some()).count();
        let action = if req.dry_run {
            "dispose (dry run)"
        } else {
            "dispose"
        };
        log_access(v, action, &format!("{done} disposed, {held} kept by holds"));
        Ok(Json(out))
    })
    .await
}

/// C2SP tlog-tiles `<prefix>/checkpoint`: the latest signed checkpoint, for anyone. No token,
/// and a public read does not count as records-office activity (it never delays the idle
/// seal). It only reads: signing stays with the checkpoint interval.
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
