//! The archive's full-text index (issue 11), sans I/O: a tantivy index in a RAM directory,
//! so that no term of any record ever rests on disk. The archiver builds it after unseal
//! from the opened records, adds each record as it is archived, removes disposed ones and
//! drops it at seal.
//!
//! Indexed: the text of a record (a message, an edit, a title, a membership or timers note)
//! and the name of an attached file, with tantivy's default tokenizer (words split on
//! anything not alphanumeric, lowercased: searches are case-insensitive). Kept as terms and
//! fast fields for the filters: the leaf, the chat id, the kind, the participants (sender and
//! recipients' users) and the delivery server's receipt time. Nothing is stored: a hit is a
//! leaf, which the caller opens from the archive.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Bound;

use tantivy::collector::{Count, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, QueryParser, RangeQuery, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, FAST, INDEXED, STRING, TEXT};
use tantivy::{Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term};
use vellum_record::{Record, RecordKind};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query or a filter is malformed (a 400).
    #[error("{0}")]
    BadQuery(String),
    /// A participant no indexed record names.
    #[error("no record in the archive names the user {0:?}")]
    UnknownUser(String),
    /// A chat that is neither the id nor a title of any indexed record's chat.
    #[error("no chat {0:?} in the archive (neither a chat id nor a title)")]
    UnknownChat(String),
    #[error("the search index failed: {0}")]
    Index(String),
}

impl From<tantivy::TantivyError> for Error {
    fn from(e: tantivy::TantivyError) -> Self {
        Error::Index(e.to_string())
    }
}

/// Every record kind a search can filter on (`RecordKind::as_str`).
pub const KINDS: &[&str] = &[
    "message",
    "edit",
    "delete",
    "attachment",
    "membership",
    "title",
    "timers",
    "reaction",
    "unknown",
];

/// The longest query text accepted.
pub const MAX_QUERY_CHARS: usize = 1000;

/// The indexing memory budget: tantivy flushes a segment (into the RAM directory) when it is
/// reached. One indexing thread: the other core keeps decrypting and archiving.
const WRITER_BUDGET: usize = 64 * 1024 * 1024;

/// What every hit must also satisfy.
#[derive(Debug, Default, Clone)]
pub struct Filters<'a> {
    /// Users who must all have taken part (sent it or received it).
    pub participants: &'a [String],
    /// Chats by id or title; a record in any of them matches. Empty: every chat.
    pub chats: &'a [String],
    /// Record kinds (see [`KINDS`]); empty: every kind.
    pub kinds: &'a [String],
    /// Inclusive bounds on the server's receipt time, Unix ms.
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// Every match counted, and the leaves of the page asked for, in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub total: u64,
    pub leaves: Vec<u64>,
}

struct Fields {
    text: Field,
    leaf: Field,
    chat: Field,
    kind: Field,
    participant: Field,
    received: Field,
}

pub struct SearchIndex {
    writer: IndexWriter,
    reader: IndexReader,
    fields: Fields,
    parser: QueryParser,
    /// Each chat's leaves in log order, for the context around a hit.
    chats: HashMap<String, Vec<u64>>,
    /// Chat ids by every title their records carried.
    titles: HashMap<String, BTreeSet<String>>,
    /// Every user a record named as sender or recipient.
    users: HashSet<String>,
    /// Added or removed since the last commit: searched only after one.
    uncommitted: bool,
    documents: u64,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex")
            .field("documents", &self.documents)
            .finish_non_exhaustive()
    }
}

impl SearchIndex {
    /// An empty index, in memory.
    pub fn new() -> Result<Self, Error> {
        let mut schema = Schema::builder();
        let fields = Fields {
            text: schema.add_text_field("text", TEXT),
            leaf: schema.add_u64_field("leaf", INDEXED | FAST),
            chat: schema.add_text_field("chat", STRING),
            kind: schema.add_text_field("kind", STRING),
            participant: schema.add_text_field("participant", STRING),
            received: schema.add_i64_field("received", INDEXED | FAST),
        };
        let index = Index::create_in_ram(schema.build());
        let writer = index.writer_with_num_threads(1, WRITER_BUDGET)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let mut parser = QueryParser::for_index(&index, vec![fields.text]);
        // "north gate" finds records with both words, as every search box does.
        parser.set_conjunction_by_default();
        // Only for `word*` (see `rewrite`): a user's own `/…/` is escaped.
        parser.allow_regexes();
        Ok(Self {
            writer,
            reader,
            fields,
            parser,
            chats: HashMap::new(),
            titles: HashMap::new(),
            users: HashSet::new(),
            uncommitted: false,
            documents: 0,
        })
    }

    /// How many records are indexed.
    pub fn len(&self) -> u64 {
        self.documents
    }

    pub fn is_empty(&self) -> bool {
        self.documents == 0
    }

    /// Indexes record `record` of leaf `leaf` (each leaf once: the caller adds a record when
    /// it is first archived or opened).
    pub fn add(&mut self, leaf: u64, record: &Record) -> Result<(), Error> {
        let f = &self.fields;
        let mut doc = TantivyDocument::default();
        doc.add_u64(f.leaf, leaf);
        doc.add_text(f.chat, &record.chat_id);
        doc.add_text(f.kind, record.kind.as_str());
        doc.add_i64(f.received, record.received_at);
        if let Some(text) = searchable_text(record) {
            doc.add_text(f.text, text);
        }
        let mut participants = BTreeSet::new();
        participants.insert(record.sender_user.as_str());
        participants.extend(record.recipients.iter().map(|m| m.user.as_str()));
        for user in participants {
            doc.add_text(f.participant, user);
            if !self.users.contains(user) {
                self.users.insert(user.to_owned());
            }
        }
        self.writer.add_document(doc)?;
        let leaves = self.chats.entry(record.chat_id.clone()).or_default();
        // Catch-up adds old leaves while ingest adds new ones: keep log order.
        match leaves.last() {
            Some(&last) if last > leaf => {
                if let Err(at) = leaves.binary_search(&leaf) {
                    leaves.insert(at, leaf);
                }
            }
            _ => leaves.push(leaf),
        }
        if let Some(title) = &record.chat_title {
            self.titles
                .entry(title.clone())
                .or_default()
                .insert(record.chat_id.clone());
        }
        self.uncommitted = true;
        self.documents += 1;
        Ok(())
    }

    /// Takes a disposed record out (its chat id says where its context entry is).
    pub fn remove(&mut self, leaf: u64, chat_id: &str) {
        self.writer
            .delete_term(Term::from_field_u64(self.fields.leaf, leaf));
        if let Some(leaves) = self.chats.get_mut(chat_id) {
            if let Ok(at) = leaves.binary_search(&leaf) {
                leaves.remove(at);
                self.documents -= 1;
            }
        }
        self.uncommitted = true;
    }

    /// Makes what was added or removed searchable.
    pub fn commit(&mut self) -> Result<(), Error> {
        if self.uncommitted {
            self.writer.commit()?;
            self.reader.reload()?;
            self.uncommitted = false;
        }
        Ok(())
    }

    /// The records matching `query` (the language is `rewrite`'s) and every filter:
    /// `total` counts them all, `leaves` is the page from `offset`, at most `limit`, in log
    /// order.
    pub fn search(
        &mut self,
        query: &str,
        filters: &Filters,
        offset: usize,
        limit: usize,
    ) -> Result<Found, Error> {
        let query = self.query(query, filters)?;
        self.commit()?;
        let searcher = self.reader.searcher();
        let page = TopDocs::with_limit(limit.max(1))
            .and_offset(offset)
            .order_by_fast_field::<u64>("leaf", Order::Asc);
        let (total, page) = searcher.search(&query, &(Count, page))?;
        let leaves = if limit == 0 {
            Vec::new()
        } else {
            page.into_iter().filter_map(|(leaf, _)| leaf).collect()
        };
        Ok(Found {
            total: total as u64,
            leaves,
        })
    }

    /// Up to `n` leaves of `chat_id` before `leaf` and up to `n` after it, in log order.
    pub fn context(&self, leaf: u64, chat_id: &str, n: usize) -> Vec<u64> {
        let Some(leaves) = self.chats.get(chat_id) else {
            return Vec::new();
        };
        let Ok(at) = leaves.binary_search(&leaf) else {
            return Vec::new();
        };
        let before = &leaves[at.saturating_sub(n)..at];
        let after = &leaves[at + 1..(at + 1 + n).min(leaves.len())];
        before.iter().chain(after).copied().collect()
    }

    /// The query of the text and the filters; an unknown user or chat is an error.
    fn query(&self, text: &str, filters: &Filters) -> Result<Box<dyn Query>, Error> {
        let f = &self.fields;
        let term = |field: Field, value: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, value),
                IndexRecordOption::Basic,
            ))
        };
        let any_of = |terms: Vec<Box<dyn Query>>| -> Box<dyn Query> {
            Box::new(BooleanQuery::new(
                terms.into_iter().map(|q| (Occur::Should, q)).collect(),
            ))
        };
        let mut must: Vec<Box<dyn Query>> = Vec::new();
        if text.chars().count() > MAX_QUERY_CHARS {
            return Err(Error::BadQuery(format!(
                "the query is longer than {MAX_QUERY_CHARS} characters"
            )));
        }
        if !text.trim().is_empty() {
            let rewritten = rewrite(text);
            let parsed = match self.parser.parse_query(&rewritten) {
                // `-gate` alone: every record but those.
                Err(tantivy::query::QueryParserError::AllButQueryForbidden) => {
                    self.parser.parse_query(&format!("* ({rewritten})"))
                }
                parsed => parsed,
            };
            must.push(parsed.map_err(query_error)?);
        }
        for user in filters.participants {
            if !self.users.contains(user) {
                return Err(Error::UnknownUser(user.clone()));
            }
            must.push(term(f.participant, user));
        }
        if !filters.chats.is_empty() {
            let mut ids = BTreeSet::new();
            for chat in filters.chats {
                let by_title = self.titles.get(chat);
                if !self.chats.contains_key(chat) && by_title.is_none() {
                    return Err(Error::UnknownChat(chat.clone()));
                }
                if self.chats.contains_key(chat) {
                    ids.insert(chat.as_str());
                }
                ids.extend(by_title.into_iter().flatten().map(String::as_str));
            }
            must.push(any_of(ids.into_iter().map(|id| term(f.chat, id)).collect()));
        }
        if !filters.kinds.is_empty() {
            if let Some(unknown) = filters.kinds.iter().find(|k| !KINDS.contains(&k.as_str())) {
                return Err(Error::BadQuery(format!(
                    "no record kind {unknown:?}: one of {}",
                    KINDS.join(", ")
                )));
            }
            must.push(any_of(
                filters.kinds.iter().map(|k| term(f.kind, k)).collect(),
            ));
        }
        if filters.from.is_some() || filters.to.is_some() {
            let bound = |ms: Option<i64>| {
                ms.map_or(Bound::Unbounded, |ms| {
                    Bound::Included(Term::from_field_i64(f.received, ms))
                })
            };
            must.push(Box::new(RangeQuery::new(
                bound(filters.from),
                bound(filters.to),
            )));
        }
        Ok(match must.len() {
            0 => Box::new(AllQuery),
            1 => must.pop().expect("one clause"),
            _ => Box::new(BooleanQuery::new(
                must.into_iter().map(|q| (Occur::Must, q)).collect(),
            )),
        })
    }
}

/// What of a record is searched as text: a file's name (once per file, on its first part),
/// or the record's text; never an unknown kind's raw payload.
fn searchable_text(record: &Record) -> Option<&str> {
    match &record.kind {
        RecordKind::Attachment(file) => (file.part == 0).then_some(file.name.as_str()),
        RecordKind::Unknown { .. } => None,
        _ => record.text.as_deref(),
    }
}

/// A parse error, said without the query's words (they may be sensitive).
fn query_error(e: tantivy::query::QueryParserError) -> Error {
    use tantivy::query::QueryParserError as E;
    Error::BadQuery(match e {
        E::SyntaxError(_) => "malformed query: an unclosed quote or parenthesis, or AND/OR/NOT without a word on both sides".into(),
        E::PhrasePrefixRequiresAtLeastTwoTerms { .. } => {
            "malformed query: \"…\"* needs at least two words in the quotes (for one word, write word*)".into()
        }
        other => format!("malformed query: {other}"),
    })
}

/// Characters tantivy's grammar gives a meaning the query language does not: escaped, so
/// that `10:30`, `don't` or `[draft]` are words (a field name, a single-quoted phrase, a
/// range otherwise).
const LITERAL: &[char] = &['\\', ':', '\'', '^', '`', '{', '}', '[', ']', '!', '~', '/'];

/// The user's query in tantivy's grammar: `"phrase"` (double quotes only), `AND`, `OR`,
/// `NOT`, `+must`, `-mustnot` and parentheses as they are; `word*` (letters and digits before
/// the star) a prefix, as a regex over the index's lowercased terms; every other special
/// character escaped, so no field, range, boost, slop or regex can be written.
fn rewrite(query: &str) -> String {
    let mut out = String::with_capacity(query.len() + 8);
    let mut chars = query.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                // A phrase, kept whole up to its closing quote (or the end: then a syntax
                // error, as it should be). A backslash would escape the closing quote.
                out.push('"');
                for c in chars.by_ref() {
                    out.push(if c == '\\' { ' ' } else { c });
                    if c == '"' {
                        break;
                    }
                }
            }
            c if c.is_whitespace() || matches!(c, '(' | ')' | '+' | '-') => out.push(c),
            _ => {
                let mut word = String::from(c);
                while let Some(&next) = chars.peek() {
                    if next.is_whitespace() || matches!(next, '(' | ')' | '"') {
                        break;
                    }
                    word.push(next);
                    chars.next();
                }
                push_word(&mut out, &word);
            }
        }
    }
    out
}

fn push_word(out: &mut String, word: &str) {
    if let Some(stem) = word.strip_suffix('*') {
        if !stem.is_empty() && stem.chars().all(char::is_alphanumeric) {
            out.push_str("text:/");
            out.push_str(&stem.to_lowercase());
            out.push_str(".*/");
            return;
        }
        if stem.is_empty() {
            // `*` alone: every record.
            out.push('*');
            return;
        }
    }
    for c in word.chars() {
        if LITERAL.contains(&c) || c == '*' {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests;
