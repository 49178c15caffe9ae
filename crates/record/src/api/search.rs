//! `POST /v1/search`: full-text search of the unsealed archive (issue 11). The same request
//! answers the CLI (`vellum records search`), the console and a FOIA case's `add`.

use serde::{Deserialize, Serialize};

use crate::Record;

/// A search: a query over the text and filters that all must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)] // a misspelt filter must not silently match everything
pub struct SearchRequest {
    /// The query over message text and attachment names: words, "a phrase", AND, OR, NOT,
    /// +must, -mustnot, prefix*, parentheses. Empty: every record the filters let through.
    #[serde(default)]
    pub q: String,
    /// Users who must all have taken part (sender or recipient): "between alice and bob".
    #[serde(default)]
    pub participants: Vec<String>,
    /// Chats (id or title); a record in any of them matches. Empty: every chat.
    #[serde(default)]
    pub chats: Vec<String>,
    /// Record kinds (`message`, `edit`, `delete`, `attachment`, `membership`, `title`,
    /// `timers`, `reaction`); empty: every kind.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Inclusive bounds on the delivery server's receipt time: RFC 3339 with any offset, or
    /// a plain date (`2026-11-03`) in the office's time zone (`from` its first instant, `to`
    /// its last).
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    /// How many records of the same chat before and after each hit to return with it.
    #[serde(default)]
    pub context: u32,
    /// At most this many hits (default 100, at most 10,000), after `offset`.
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub offset: u32,
}

/// The answer to a search.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchResults {
    /// Every match, of which `hits` is the page asked for.
    pub total: u64,
    pub hits: Vec<SearchHit>,
}

/// One matching record, with its conversation around it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchHit {
    /// The record's leaf index in the log: its id in cases and productions.
    pub leaf: u64,
    /// The record (see the record format).
    #[schema(value_type = Object)]
    pub record: Record,
    /// Records of the same chat before and after it, in log order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<ContextRecord>,
}

/// A record shown around a hit.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContextRecord {
    pub leaf: u64,
    #[schema(value_type = Object)]
    pub record: Record,
}
