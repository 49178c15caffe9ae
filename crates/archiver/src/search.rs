//! Search of the unsealed archive (issue 11): the one entry point the records API, the
//! console and FOIA cases call, over the full-text index of `vellum-search`.
//!
//! The index lives in memory only, on the archive's actor, and only while unsealed: no term
//! of any record rests on disk. After an unseal the actor opens and indexes the archived
//! records in batches of [`BATCH`] between its other jobs (catch-up), so ingest and the API
//! wait at most one batch; each record archived meanwhile is indexed as it is archived. A
//! search during catch-up finishes the catch-up itself if that takes under
//! [`SEARCH_WAITS`]; otherwise it answers `503 indexing` with the progress (also in `GET
//! /v1/status`), and the CLI waits and retries. Seal drops the index, and its memory with
//! it; disposition takes the record out.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use jiff::tz::TimeZone;
use vellum_http::{codes, ApiError};
use vellum_record::api::search::{ContextRecord, SearchHit, SearchRequest, SearchResults};
use vellum_record::api::IndexProgress;
use vellum_record::Record;
use vellum_search::{Filters, SearchIndex};

use crate::settings::Bound;
use crate::Vault;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("the archive is sealed: keyholders must hand in enough shares to unseal it first")]
    Sealed,
    /// The query, a filter, a date or the page is malformed.
    #[error("{0}")]
    BadQuery(String),
    #[error("no record in the archive names the user {0:?}")]
    UnknownUser(String),
    #[error("no chat {0:?} in the archive (neither a chat id nor a title)")]
    UnknownChat(String),
    /// The index is still catching up on the records archived while sealed.
    #[error("the search index is catching up after the unseal: {indexed} of {total} records indexed; try again shortly")]
    Indexing { indexed: u64, total: u64 },
    #[error("{0}")]
    Internal(String),
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> Self {
        let (status, code) = match &e {
            SearchError::Sealed => (StatusCode::LOCKED, codes::SEALED),
            SearchError::BadQuery(_) => (StatusCode::BAD_REQUEST, codes::BAD_REQUEST),
            SearchError::UnknownUser(_) => (StatusCode::NOT_FOUND, codes::UNKNOWN_USER),
            SearchError::UnknownChat(_) => (StatusCode::NOT_FOUND, codes::UNKNOWN_CHAT),
            SearchError::Indexing { .. } => (StatusCode::SERVICE_UNAVAILABLE, codes::INDEXING),
            SearchError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<vellum_search::Error> for SearchError {
    fn from(e: vellum_search::Error) -> Self {
        match e {
            vellum_search::Error::BadQuery(m) => SearchError::BadQuery(m),
            vellum_search::Error::UnknownUser(u) => SearchError::UnknownUser(u),
            vellum_search::Error::UnknownChat(c) => SearchError::UnknownChat(c),
            e @ vellum_search::Error::Index(_) => SearchError::Internal(e.to_string()),
        }
    }
}

/// Records opened and indexed per turn of catch-up: a few milliseconds of the actor's time.
pub const BATCH: usize = 256;
/// How long a search may finish the catch-up itself before it answers with the progress.
pub const SEARCH_WAITS: Duration = Duration::from_secs(1);
/// Hits per page unless the request says, and at most.
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 10_000;
/// How deep paging reaches (offset + limit): the index reserves a slot for every hit up to
/// it, so an unbounded offset is an allocation an analyst could make the archiver die of.
pub const MAX_DEPTH: u64 = 100_000;
/// Records of context before and after a hit, at most.
pub const MAX_CONTEXT: u32 = 50;

/// The search's part of the vault: the office's time zone, and the index while unsealed.
pub struct SearchState {
    /// Plain dates in a request are this zone's days (`DATA/office.json`).
    pub time_zone: TimeZone,
    index: Option<Indexing>,
}

impl Default for SearchState {
    fn default() -> Self {
        Self {
            time_zone: TimeZone::UTC,
            index: None,
        }
    }
}

struct Indexing {
    index: SearchIndex,
    /// The records archived before the unseal, oldest first, to open and index from `next`.
    backlog: Vec<u64>,
    next: usize,
}

impl Indexing {
    fn progress(&self) -> IndexProgress {
        let left = (self.backlog.len() - self.next) as u64;
        IndexProgress {
            indexed: self.index.len(),
            total: self.index.len() + left,
        }
    }
}

impl SearchState {
    /// Whether an index is held (in memory) now.
    pub fn has_index(&self) -> bool {
        self.index.is_some()
    }
}

/// Brings the index in line with the records key after each of the actor's jobs: drops it
/// (and its memory) once sealed, starts one (an empty index and the backlog of every record
/// not disposed) once unsealed. However the key came or went, there is never an index
/// without it.
pub(crate) fn follow_seal(v: &mut Vault) {
    match (v.secret.is_some(), v.search.index.is_some()) {
        (false, true) => {
            v.search.index = None;
            tracing::info!("search index dropped at seal");
        }
        (true, false) => match SearchIndex::new() {
            Ok(index) => {
                let backlog: Vec<u64> = v
                    .archive
                    .records()
                    .filter(|(_, disposed)| !disposed)
                    .map(|(leaf, _)| leaf)
                    .collect();
                tracing::info!(records = backlog.len(), "search index catching up");
                v.search.index = Some(Indexing {
                    index,
                    backlog,
                    next: 0,
                });
            }
            Err(e) => tracing::error!(error = %e, "cannot create the search index"),
        },
        _ => {}
    }
}

/// One batch of catch-up, when the actor has nothing else to do; whether one was done.
pub(crate) fn catch_up(v: &mut Vault) -> bool {
    let Some(secret) = v.secret.as_ref() else {
        return false;
    };
    let Some(indexing) = v.search.index.as_mut() else {
        return false;
    };
    if indexing.next == indexing.backlog.len() {
        return false;
    }
    let end = (indexing.next + BATCH).min(indexing.backlog.len());
    for &leaf in &indexing.backlog[indexing.next..end] {
        match crate::api::open_record(&v.archive, secret, leaf) {
            Ok(Some(opened)) => {
                if let Err(e) = indexing.index.add(leaf, &opened.event) {
                    tracing::error!(leaf, error = %e, "cannot index a record");
                }
            }
            Ok(None) => {} // disposed since the unseal
            Err(e) => tracing::error!(leaf, error = %e, "cannot open a record to index it"),
        }
    }
    indexing.next = end;
    if end == indexing.backlog.len() {
        indexing.backlog = Vec::new();
        indexing.next = 0;
        if let Err(e) = indexing.index.commit() {
            tracing::error!(error = %e, "cannot commit the search index");
        }
        tracing::info!(records = indexing.index.len(), "search index caught up");
    }
    true
}

/// The index's progress, while unsealed.
pub(crate) fn progress(v: &Vault) -> Option<IndexProgress> {
    v.search.index.as_ref().map(Indexing::progress)
}

/// Indexes a record just archived (new in the log) at `leaf`.
pub(crate) fn archived(v: &mut Vault, leaf: u64, record: &Record) {
    if let Some(indexing) = v.search.index.as_mut() {
        if let Err(e) = indexing.index.add(leaf, record) {
            tracing::error!(leaf, error = %e, "cannot index a record");
        }
    }
}

/// Takes a disposed record out of the index.
pub(crate) fn disposed(v: &mut Vault, leaf: u64, chat_id: &str) {
    if let Some(indexing) = v.search.index.as_mut() {
        indexing.index.remove(leaf, chat_id);
    }
}

/// The inclusive bounds of a request, Unix ms of the server's receipt time.
pub fn time_bounds(
    req: &SearchRequest,
    tz: &TimeZone,
) -> Result<(Option<i64>, Option<i64>), SearchError> {
    let from = req
        .from
        .as_deref()
        .map(|s| instant(s, tz, false, "from"))
        .transpose()?;
    let to = req
        .to
        .as_deref()
        .map(|s| instant(s, tz, true, "to"))
        .transpose()?;
    if let (Some(f), Some(t)) = (from, to) {
        if t < f {
            return Err(SearchError::BadQuery(
                "the range ends before it begins (to is before from)".into(),
            ));
        }
    }
    Ok((from, to))
}

/// [`crate::settings::parse_instant`], its error naming the filter.
fn instant(text: &str, tz: &TimeZone, end: bool, name: &str) -> Result<i64, SearchError> {
    let bound = if end { Bound::End } else { Bound::Start };
    crate::settings::parse_instant(text, tz, bound).map_err(|why| {
        SearchError::BadQuery(format!(
            "{name} {:?}: {why}; give an RFC 3339 time with an offset (2026-11-03T09:00:00-05:00) or a date (2026-11-03, a day of the office's time zone)",
            text.trim()
        ))
    })
}

/// What the audit trail says of a search's terms: an HMAC-SHA256 (first 16 bytes, hex)
/// under a key derived from the records key. Equal searches log equal digests, so the
/// office can show which searches were the same; an unsalted hash would let anyone who reads
/// the public log try a dictionary of words against it. `None` while sealed (no search runs).
pub fn query_digest(vault: &Vault, req: &SearchRequest) -> Option<String> {
    use hmac::{KeyInit, Mac};
    let key = vault
        .secret
        .as_ref()?
        .derive_key("vellum search audit digest v1");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key[..]).expect("any key length");
    mac.update(&serde_json::to_vec(req).unwrap_or_default());
    Some(hex::encode(&mac.finalize().into_bytes()[..16]))
}

/// Runs `req` over every record not disposed: the total, the page asked for in log order,
/// each hit with up to `context` records of its chat before and after it.
pub fn run(v: &mut Vault, req: &SearchRequest) -> Result<SearchResults, SearchError> {
    run_waiting(v, req, SEARCH_WAITS)
}

/// [`run`], finishing catch-up for at most `wait` before answering with the progress.
fn run_waiting(
    v: &mut Vault,
    req: &SearchRequest,
    wait: Duration,
) -> Result<SearchResults, SearchError> {
    let limit = req.limit.unwrap_or(DEFAULT_LIMIT);
    if limit > MAX_LIMIT {
        return Err(SearchError::BadQuery(format!(
            "limit is at most {MAX_LIMIT} (page with offset)"
        )));
    }
    if u64::from(req.offset) + u64::from(limit) > MAX_DEPTH {
        return Err(SearchError::BadQuery(format!(
            "offset + limit is at most {MAX_DEPTH}: narrow the search (dates, chats, participants)"
        )));
    }
    if req.context > MAX_CONTEXT {
        return Err(SearchError::BadQuery(format!(
            "context is at most {MAX_CONTEXT} records"
        )));
    }
    let (from, to) = time_bounds(req, &v.search.time_zone)?;
    follow_seal(v);
    if v.secret.is_none() {
        return Err(SearchError::Sealed);
    }
    let started = Instant::now();
    while catch_up(v) {
        if started.elapsed() >= wait {
            if let Some(progress) = progress(v).filter(|p| p.indexed < p.total) {
                return Err(SearchError::Indexing {
                    indexed: progress.indexed,
                    total: progress.total,
                });
            }
        }
    }
    let (Some(secret), Some(indexing)) = (v.secret.as_ref(), v.search.index.as_mut()) else {
        return Err(SearchError::Internal(
            "the search index could not be made".into(),
        ));
    };
    let filters = Filters {
        participants: &req.participants,
        chats: &req.chats,
        kinds: &req.kinds,
        from,
        to,
    };
    let found = indexing
        .index
        .search(&req.q, &filters, req.offset as usize, limit as usize)?;
    let open = |leaf: u64| match crate::api::open_record(&v.archive, secret, leaf) {
        Ok(opened) => opened.map(|o| o.event),
        Err(e) => {
            tracing::error!(leaf, error = %e, "a record does not open under the records key");
            None
        }
    };
    let mut hits = Vec::with_capacity(found.leaves.len());
    for leaf in found.leaves {
        let Some(record) = open(leaf) else { continue };
        let context = indexing
            .index
            .context(leaf, &record.chat_id, req.context as usize)
            .into_iter()
            .filter_map(|leaf| open(leaf).map(|record| ContextRecord { leaf, record }))
            .collect();
        hits.push(SearchHit {
            leaf,
            record,
            context,
        });
    }
    Ok(SearchResults {
        total: found.total,
        hits,
    })
}

#[cfg(test)]
mod tests;
