//! Search of the unsealed archive (issue 11): the one entry point the records API, the
//! console and FOIA cases call. (Contract placeholder: a scan of the opened records; the
//! search work replaces it with the encrypted full-text index.)

use vellum_record::api::search::{SearchHit, SearchRequest, SearchResults};

use crate::Vault;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("the archive is sealed: k keyholders must unseal it first")]
    Sealed,
    #[error("{0}")]
    BadQuery(String),
}

/// Runs `req` over every record not disposed.
pub fn run(vault: &mut Vault, req: &SearchRequest) -> Result<SearchResults, SearchError> {
    let records = crate::api::open_records(vault).ok_or(SearchError::Sealed)?;
    let q = req.q.to_lowercase();
    let hits: Vec<SearchHit> = records
        .into_iter()
        .filter(|r| {
            let e = &r.event;
            (q.is_empty()
                || e.text
                    .as_deref()
                    .is_some_and(|t| t.to_lowercase().contains(&q)))
                && req
                    .participants
                    .iter()
                    .all(|u| e.sender_user == *u || e.recipients.iter().any(|m| m.user == *u))
                && (req.chats.is_empty()
                    || req
                        .chats
                        .iter()
                        .any(|c| *c == e.chat_id || e.chat_title.as_deref() == Some(c.as_str())))
                && (req.kinds.is_empty() || req.kinds.iter().any(|k| k == e.kind.as_str()))
        })
        .map(|r| SearchHit {
            leaf: r.leaf,
            record: r.event,
            context: Vec::new(),
        })
        .collect();
    Ok(SearchResults {
        total: hits.len() as u64,
        hits,
    })
}
