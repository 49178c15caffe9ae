//! FOIA cases (issue 11): requester, dates, status, analyst, notes, a review set of record
//! leaves, each marked and redacted under an exemption. Plain functions over the actor's
//! [`Vault`], so the records API and the console do the same thing.
//!
//! A case quotes the request and, through its notes, the records: each case is one
//! document in `DATA/office.db`, sealed with AES-256-GCM under a key derived from the
//! records key, so it can be read only while the archive is unsealed. Only its id and
//! timestamps are in clear. Every action is a leaf of the log naming the caller and the
//! case, never a word of it.

pub mod calendar;
pub mod jobs;

use std::collections::{BTreeSet, HashMap};

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use rusqlite::{params, OptionalExtension};
use vellum_production::{FieldRedaction, RedactableField, TextRedaction, Treatment};
use vellum_record::api::foia::{
    Added, Case, CaseDetail, CaseItem, CaseStatus, CaseSummary, CreateCase, Exemption, Mark,
    MetadataField, NameRedaction, Note, Redaction, RedactionTarget, UpdateCase,
};
use vellum_record::api::office::{Permission, Role};
use vellum_record::api::search::{ContextRecord, SearchRequest};
use vellum_record::{Record, RecordKind};
use zeroize::Zeroizing;

use crate::api::{log_access, now_ms};
use crate::office::Caller;
use crate::production::Selection;
use crate::settings::OfficeSettings;
use crate::Vault;

/// The HKDF label of the case-sealing key.
const CASE_KEY_LABEL: &str = "vellum foia case documents v1";
const NONCE_LEN: usize = 12;

pub const MAX_REQUESTER: usize = 200;
pub const MAX_DESCRIPTION: usize = 4000;
pub const MAX_NOTE: usize = 10_000;
/// Records one request may add, and one case may hold.
pub const MAX_ADD: usize = 10_000;
pub const MAX_ITEMS: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum FoiaError {
    #[error("the archive is sealed: keyholders must hand in enough shares to unseal it first")]
    Sealed,
    #[error("{0} has the role {1}, which may not do this")]
    Forbidden(String, Role),
    #[error("no case {0:?}")]
    NoSuchCase(String),
    #[error("leaf {leaf} is not in the review set of case {case}")]
    NotInCase { case: String, leaf: u64 },
    #[error("no record at leaf {0}: not a record leaf, disposed, or past the end of the log")]
    NoSuchRecord(u64),
    #[error("case {case} has no redaction {id}")]
    NoSuchRedaction { case: String, id: u64 },
    #[error(
        "no production {job:?} of case {case:?} (downloaded already, or the archive sealed since)"
    )]
    NoSuchJob { case: String, job: String },
    #[error("{0}")]
    Invalid(String),
    #[error("case {0} is closed: reopen it (status open) to change it")]
    Closed(String),
    #[error("{0}")]
    Conflict(String),
    /// The search that adds records refused (a bad query, an unknown user, still indexing).
    #[error(transparent)]
    Search(#[from] crate::search::SearchError),
    #[error("case store: {0}")]
    Db(#[from] rusqlite::Error),
    #[error(
        "case {0} does not open under the records key: the file was altered or is of another key"
    )]
    Corrupt(String),
}

fn allowed(caller: &Caller, permission: Permission) -> Result<(), FoiaError> {
    if caller.role.allows(permission) {
        Ok(())
    } else {
        Err(FoiaError::Forbidden(caller.name.clone(), caller.role))
    }
}

fn case_key(vault: &Vault) -> Result<Zeroizing<[u8; 32]>, FoiaError> {
    vault
        .secret
        .as_ref()
        .map(|s| s.derive_key(CASE_KEY_LABEL))
        .ok_or(FoiaError::Sealed)
}

/// `nonce || AES-256-GCM(case JSON)`, bound to the case id (a document moved to another
/// id does not open).
pub fn seal_case(key: &[u8; 32], case: &Case) -> Vec<u8> {
    let aead = Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key));
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).expect("operating system RNG");
    let mut body = serde_json::to_vec(case).expect("a case serialises");
    aead.encrypt_in_place(&Nonce::from(nonce), case.id.as_bytes(), &mut body)
        .expect("AES-GCM seals any case document");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&body);
    out
}

pub fn open_case(key: &[u8; 32], id: &str, sealed: &[u8]) -> Result<Case, FoiaError> {
    let corrupt = || FoiaError::Corrupt(id.to_owned());
    if sealed.len() < NONCE_LEN {
        return Err(corrupt());
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at the nonce's length");
    let aead = Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key));
    let mut body = Zeroizing::new(body.to_vec());
    aead.decrypt_in_place(&Nonce::from(nonce), id.as_bytes(), &mut *body)
        .map_err(|_| corrupt())?;
    let case: Case = serde_json::from_slice(&body).map_err(|_| corrupt())?;
    if case.id != id {
        return Err(corrupt());
    }
    Ok(case)
}

fn load(vault: &Vault, id: &str) -> Result<Case, FoiaError> {
    let key = case_key(vault)?;
    let sealed: Option<Vec<u8>> = vault
        .office
        .conn()
        .query_row("SELECT sealed FROM cases WHERE id = ?1", [id], |r| r.get(0))
        .optional()?;
    let sealed = sealed.ok_or_else(|| FoiaError::NoSuchCase(id.to_owned()))?;
    open_case(&key, id, &sealed)
}

/// Writes back a case that exists.
fn store(vault: &Vault, case: &Case) -> Result<(), FoiaError> {
    let key = case_key(vault)?;
    let changed = vault.office.conn().execute(
        "UPDATE cases SET updated_at = ?2, sealed = ?3 WHERE id = ?1",
        params![case.id, now_ms(), seal_case(&key, case)],
    )?;
    if changed == 0 {
        return Err(FoiaError::NoSuchCase(case.id.clone()));
    }
    Ok(())
}

fn all_cases(vault: &Vault) -> Result<Vec<Case>, FoiaError> {
    let mut stmt = vault
        .office
        .conn()
        .prepare("SELECT id, sealed FROM cases ORDER BY id")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let key = case_key(vault)?;
    rows.iter()
        .map(|(id, sealed)| open_case(&key, id, sealed))
        .collect()
}

/// Loads a case that may be changed (not closed).
fn load_open(vault: &Vault, id: &str) -> Result<Case, FoiaError> {
    let case = load(vault, id)?;
    if case.status == CaseStatus::Closed {
        return Err(FoiaError::Closed(case.id));
    }
    Ok(case)
}

fn text_field(what: &str, value: &str, max: usize) -> Result<String, FoiaError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max || value.chars().any(|c| c == '\0') {
        return Err(FoiaError::Invalid(format!(
            "{what} is 1 to {max} characters"
        )));
    }
    Ok(value.to_owned())
}

fn parse_date(what: &str, value: &str) -> Result<jiff::civil::Date, FoiaError> {
    value.trim().parse().map_err(|_| {
        FoiaError::Invalid(format!(
            "{what} {value:?} is not a date: use YYYY-MM-DD, like 2026-11-20"
        ))
    })
}

fn today(settings: &OfficeSettings) -> Result<jiff::civil::Date, FoiaError> {
    let tz = settings.tz().map_err(FoiaError::Invalid)?;
    Ok(jiff::Timestamp::now().to_zoned_datetime(tz).date())
}

/// The case's items, by leaf.
fn item_mut(case: &mut Case, leaf: u64) -> Result<&mut CaseItem, FoiaError> {
    let id = case.id.clone();
    case.items
        .iter_mut()
        .find(|i| i.leaf == leaf)
        .ok_or(FoiaError::NotInCase { case: id, leaf })
}

/// Record `leaf`, opened in memory; an error unless it is a record not disposed.
pub fn open_record(vault: &Vault, leaf: u64) -> Result<Record, FoiaError> {
    let secret = vault.secret.as_ref().ok_or(FoiaError::Sealed)?;
    if leaf >= vault.archive.size() {
        return Err(FoiaError::NoSuchRecord(leaf));
    }
    let Ok(vellum_archive::Leaf::Record { reference, .. }) = vault.archive.leaf(leaf) else {
        return Err(FoiaError::NoSuchRecord(leaf));
    };
    let Ok(Some(sealed)) = vault.archive.record(leaf) else {
        return Err(FoiaError::NoSuchRecord(leaf));
    };
    vellum_records::open(secret, reference.as_bytes(), &sealed)
        .ok()
        .and_then(|plain| Record::decode(&plain).ok())
        .ok_or(FoiaError::NoSuchRecord(leaf))
}

/// `POST /v1/foia/cases`: a new case, due `response_days` working days after receipt.
pub fn create(
    vault: &mut Vault,
    caller: &Caller,
    settings: &OfficeSettings,
    req: CreateCase,
) -> Result<Case, FoiaError> {
    allowed(caller, Permission::Cases)?;
    case_key(vault)?;
    let requester = text_field("the requester", &req.requester, MAX_REQUESTER)?;
    let description = text_field("the description", &req.description, MAX_DESCRIPTION)?;
    let today = today(settings)?;
    let received = match req.received.as_deref() {
        Some(d) => parse_date("the received date", d)?,
        None => today,
    };
    if received > today {
        return Err(FoiaError::Invalid(format!(
            "the received date {received} is in the future"
        )));
    }
    let calendar = settings.calendar().map_err(FoiaError::Invalid)?;
    let due = calendar.due(received).map_err(FoiaError::Invalid)?;
    // Numbered within the year; compared as numbers, since "…-10000" sorts before "…-9999".
    let prefix = format!("FOIA-{}-", today.year());
    let number = vault
        .office
        .conn()
        .prepare("SELECT id FROM cases WHERE id LIKE ?1")?
        .query_map([format!("{prefix}%")], |r| r.get::<_, String>(0))?
        .filter_map(|id| id.ok()?.strip_prefix(&prefix)?.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
        + 1;
    let case = Case {
        id: format!("{prefix}{number:04}"),
        requester,
        description,
        received: received.to_string(),
        due: due.to_string(),
        due_overridden: false,
        status: CaseStatus::Open,
        analyst: None,
        created_by: caller.name.clone(),
        created_at: now_ms(),
        notes: Vec::new(),
        items: Vec::new(),
        names: Vec::new(),
        last_redaction: 0,
        bates_next: None,
    };
    let key = case_key(vault)?;
    // A plain insert: a new case never replaces one.
    vault.office.conn().execute(
        "INSERT INTO cases (id, created_at, updated_at, sealed) VALUES (?1, ?2, ?2, ?3)",
        params![case.id, case.created_at, seal_case(&key, &case)],
    )?;
    log_access(
        vault,
        "foia",
        &format!("{} created case {}", caller.name, case.id),
    );
    Ok(case)
}

/// `GET /v1/foia/cases`.
pub fn list(vault: &mut Vault, caller: &Caller) -> Result<Vec<CaseSummary>, FoiaError> {
    allowed(caller, Permission::Cases)?;
    case_key(vault)?;
    let cases = all_cases(vault)?;
    log_access(
        vault,
        "foia",
        &format!("{} listed {} cases", caller.name, cases.len()),
    );
    Ok(cases
        .into_iter()
        .map(|c| CaseSummary {
            items: c.items.len() as u64,
            unreviewed: count(&c, Mark::Unreviewed),
            responsive: count(&c, Mark::Responsive),
            id: c.id,
            requester: c.requester,
            status: c.status,
            received: c.received,
            due: c.due,
            analyst: c.analyst,
        })
        .collect())
}

fn count(case: &Case, mark: Mark) -> u64 {
    case.items.iter().filter(|i| i.mark == mark).count() as u64
}

/// `GET /v1/foia/cases/{id}`: the case and its records, opened.
pub fn show(vault: &mut Vault, caller: &Caller, id: &str) -> Result<CaseDetail, FoiaError> {
    allowed(caller, Permission::Cases)?;
    let case = load(vault, id)?;
    let records = case
        .items
        .iter()
        .filter_map(|i| {
            open_record(vault, i.leaf).ok().map(|record| ContextRecord {
                leaf: i.leaf,
                record,
            })
        })
        .collect();
    log_access(
        vault,
        "foia",
        &format!("{} opened case {}", caller.name, case.id),
    );
    Ok(CaseDetail { case, records })
}

/// `PATCH /v1/foia/cases/{id}`: status, analyst, due date.
pub fn update(
    vault: &mut Vault,
    caller: &Caller,
    id: &str,
    req: UpdateCase,
) -> Result<Case, FoiaError> {
    allowed(caller, Permission::Cases)?;
    let mut case = load(vault, id)?;
    let reopening = req.status.is_some_and(|s| s != CaseStatus::Closed);
    if case.status == CaseStatus::Closed && !reopening {
        return Err(FoiaError::Closed(case.id));
    }
    let mut changed = Vec::new();
    if let Some(name) = &req.analyst {
        let account = vault
            .office
            .list()
            .map_err(|e| FoiaError::Invalid(e.to_string()))?
            .into_iter()
            .find(|a| a.name == *name && !a.disabled)
            .ok_or_else(|| FoiaError::Invalid(format!("no account named {name:?}")))?;
        if !matches!(account.role, Role::Analyst | Role::Officer) {
            return Err(FoiaError::Invalid(format!(
                "{name} is a {}: a case is assigned to an analyst or an officer",
                account.role
            )));
        }
        case.analyst = Some(account.name);
        changed.push(format!("assigned it to {name}"));
    }
    if let Some(due) = &req.due {
        let due = parse_date("the due date", due)?;
        let received: jiff::civil::Date = case.received.parse().expect("stored as a date");
        if due < received {
            return Err(FoiaError::Invalid(format!(
                "the due date {due} is before the request was received ({received})"
            )));
        }
        case.due = due.to_string();
        case.due_overridden = true;
        changed.push(format!("set the due date to {due}"));
    }
    if let Some(status) = req.status {
        case.status = status;
        changed.push(format!("set its status to {}", status.as_str()));
    }
    if changed.is_empty() {
        return Err(FoiaError::Invalid(
            "nothing to change: give a status, an analyst or a due date".into(),
        ));
    }
    store(vault, &case)?;
    log_access(
        vault,
        "foia",
        &format!(
            "{} updated case {}: {}",
            caller.name,
            case.id,
            changed.join(", ")
        ),
    );
    Ok(case)
}

/// `POST /v1/foia/cases/{id}/notes`.
pub fn add_note(
    vault: &mut Vault,
    caller: &Caller,
    id: &str,
    text: &str,
) -> Result<Note, FoiaError> {
    allowed(caller, Permission::Cases)?;
    let text = text_field("a note", text, MAX_NOTE)?;
    let mut case = load(vault, id)?;
    let note = Note {
        author: caller.name.clone(),
        at: now_ms(),
        text,
    };
    case.notes.push(note.clone());
    store(vault, &case)?;
    log_access(
        vault,
        "foia",
        &format!("{} added a note to case {}", caller.name, case.id),
    );
    Ok(note)
}

fn add_to(case: &mut Case, caller: &Caller, leaves: &[u64]) -> Result<Added, FoiaError> {
    let present: BTreeSet<u64> = case.items.iter().map(|i| i.leaf).collect();
    let mut added = Vec::new();
    let mut already = 0;
    let mut seen = BTreeSet::new();
    for &leaf in leaves {
        if present.contains(&leaf) || !seen.insert(leaf) {
            already += 1;
            continue;
        }
        added.push(leaf);
    }
    if case.items.len() + added.len() > MAX_ITEMS {
        return Err(FoiaError::Invalid(format!(
            "a case holds at most {MAX_ITEMS} records"
        )));
    }
    let now = now_ms();
    case.items.extend(added.iter().map(|&leaf| CaseItem {
        leaf,
        added_by: caller.name.clone(),
        added_at: now,
        mark: Mark::Unreviewed,
        marked_by: None,
        marked_at: None,
        redactions: Vec::new(),
    }));
    Ok(Added { added, already })
}

/// `POST /v1/foia/cases/{id}/items`: every record a search finds joins the review set.
pub fn add_search(
    vault: &mut Vault,
    caller: &Caller,
    id: &str,
    mut req: SearchRequest,
) -> Result<Added, FoiaError> {
    allowed(caller, Permission::Cases)?;
    let mut case = load_open(vault, id)?;
    // A case takes every match, not the search's first page.
    req.limit = Some(req.limit.unwrap_or(MAX_ADD as u32).min(MAX_ADD as u32));
    req.context = 0;
    let results = crate::search::run(vault, &req)?;
    if results.total > MAX_ADD as u64 {
        return Err(FoiaError::Invalid(format!(
            "the search finds {} records; a case takes at most {MAX_ADD} at a time: narrow it",
            results.total
        )));
    }
    let leaves: Vec<u64> = results.hits.iter().map(|h| h.leaf).collect();
    let added = add_to(&mut case, caller, &leaves)?;
    store(vault, &case)?;
    // The log holds a digest of the query, never its words.
    let digest = crate::search::query_digest(vault, &req).unwrap_or_default();
    log_access(
        vault,
        "foia",
        &format!(
            "{} added {} records to case {} by query hmac:{digest}",
            caller.name,
            added.added.len(),
            case.id
        ),
    );
    Ok(added)
}

/// `POST /v1/foia/cases/{id}/leaves`: records by leaf index.
pub fn add_leaves(
    vault: &mut Vault,
    caller: &Caller,
    id: &str,
    leaves: &[u64],
) -> Result<Added, FoiaError> {
    allowed(caller, Permission::Cases)?;
    if leaves.is_empty() || leaves.len() > MAX_ADD {
        return Err(FoiaError::Invalid(format!("give 1 to {MAX_ADD} leaves")));
    }
    let mut case = load_open(vault, id)?;
    for &leaf in leaves {
        open_record(vault, leaf)?;
    }
    let added = add_to(&mut case, caller, leaves)?;
    store(vault, &case)?;
    log_access(
        vault,
        "foia",
        &format!(
            "{} added leaves {:?} to case {}",
            caller.name, added.added, case.id
        ),
    );
    Ok(added)
}

/// `DELETE /v1/foia/cases/{id}/items/{leaf}`: out of the review set, with its marks.
pub fn remove_leaf(
    vault: &mut Vault,
    caller: &Caller,
    id: &str,
    leaf: u64,
) -> Result<(), FoiaError> {
    allowed(caller, Permission::Cases)?;
    let mut case = load_open(vault, id)?;
    item_mut(&mut case, leaf)?;
    case.items.retain(|i| i.leaf != leaf);
    store(vault, &case)?;
    log_access(
        vault,
        "foia",
        &format!("{} removed leaf {leaf} from case {}", caller.name, case.id),
    );
    Ok(())
}

/// `PUT /v1/foia/cases/{id}/items/{leaf}/review`.
pub fn review(
    vault: &mut Vault,
    caller: &Caller,
    id: &str,
    leaf: u64,
    mark: Mark,
) -> Result<CaseItem, FoiaError> {
    allowed(caller, Permission::Cases)?;
    let mut case = load_open(vault, id)?;
    let item = item_mut(&mut case, leaf)?;
    item.mark = mark;
    (item.marked_by, item.marked_at) = match mark {
        Mark::Unreviewed => (None, None),
        _ => (Some(caller.name.clone()), Some(now_ms())),
    };
    let item = item.clone();
    if case.status == CaseStatus::Open {
        case.status = CaseStatus::InReview;
    }
    store(vault, &case)?;
    log_access(
        vault,
        "foia",
        &format!(
            "{} marked leaf {leaf} of case {} {}",
            caller.name,
            case.id,
            mark.as_str()
        ),
    );
    Ok(item)
}

/// The users whose names a record carries: sender, recipients, mentions.
fn people(record: &Record) -> BTreeSet<&str> {
    std::iter::once(record.sender_user.as_str())
        .chain(record.recipients.iter().map(|m| m.user.as_str()))
        .chain(record.mentions.iter().map(String::as_str))
        .collect()
}

fn attachment_name(record: &Record) -> Option<&str> {
    match &record.kind {
        RecordKind::Attachment(file) => Some(&file.name),
        _ => None,
    }
}

/// Checks a redaction against the record it applies to.
fn validate(record: &Record, target: &RedactionTarget) -> Result<(), FoiaError> {
    match target {
        RedactionTarget::Span { start, end } => {
            let Some(text) = &record.text else {
                return Err(FoiaError::Invalid(
                    "this record has no text to redact a span of".into(),
                ));
            };
            let len = text.chars().count();
            if start >= end || *end > len {
                return Err(FoiaError::Invalid(format!(
                    "span {start}:{end} is not within the text: START:END with START < END <= {len} (Unicode characters)"
                )));
            }
        }
        RedactionTarget::Field { field } => {
            let present = match field {
                MetadataField::Sender => true,
                MetadataField::ChatTitle => record.chat_title.is_some(),
                MetadataField::AttachmentName => attachment_name(record).is_some(),
            };
            if !present {
                return Err(FoiaError::Invalid(format!(
                    "this record has no {}",
                    field.as_str()
                )));
            }
        }
        RedactionTarget::Participant { user } => {
            if !people(record).contains(user.as_str()) {
                return Err(FoiaError::Invalid(format!(
                    "{user:?} does not take part in this record"
                )));
            }
        }
        RedactionTarget::Whole => {}
    }
    Ok(())
}

/// `POST /v1/foia/cases/{id}/items/{leaf}/redactions`. Spans are in Unicode scalar values;
/// a span that overlaps another of the same exemption is merged with it, one of another
/// exemption is refused (a character is withheld under one exemption).
pub fn redact(
    vault: &mut Vault,
    caller: &Caller,
    id: &str,
    leaf: u64,
    exemption: Exemption,
    target: RedactionTarget,
) -> Result<Redaction, FoiaError> {
    allowed(caller, Permission::Cases)?;
    let mut case = load_open(vault, id)?;
    item_mut(&mut case, leaf)?;
    let record = open_record(vault, leaf)?;
    validate(&record, &target)?;
    let next = case.last_redaction + 1;
    let item = item_mut(&mut case, leaf)?;
    let mut target = target;
    let mut merged = Vec::new();
    for existing in &item.redactions {
        let same_target = existing.target == target;
        let overlap = match (&existing.target, &target) {
            (
                RedactionTarget::Span { start: s1, end: e1 },
                RedactionTarget::Span { start: s2, end: e2 },
            ) => s1 < e2 && s2 < e1,
            (RedactionTarget::Whole, RedactionTarget::Whole) => true,
            _ => same_target,
        };
        if !overlap {
            continue;
        }
        if existing.exemption != exemption {
            return Err(FoiaError::Conflict(format!(
                "this overlaps redaction {} under {}: remove it first",
                existing.id, existing.exemption
            )));
        }
        if let (
            RedactionTarget::Span { start: s1, end: e1 },
            RedactionTarget::Span { start: s2, end: e2 },
        ) = (&existing.target, &target)
        {
            target = RedactionTarget::Span {
                start: *s1.min(s2),
                end: *e1.max(e2),
            };
        }
        merged.push(existing.id);
    }
    item.redactions.retain(|r| !merged.contains(&r.id));
    let redaction = Redaction {
        id: next,
        exemption,
        target,
        by: caller.name.clone(),
        at: now_ms(),
    };
    item.redactions.push(redaction.clone());
    case.last_redaction = next;
    store(vault, &case)?;
    let what = match &redaction.target {
        RedactionTarget::Span { start, end } => format!("span {start}:{end}"),
        RedactionTarget::Field { field } => field.as_str().to_owned(),
        // The log is read by auditors: a person's name is not repeated in it.
        RedactionTarget::Participant { .. } => "a participant's name".into(),
        RedactionTarget::Whole => "the whole record".into(),
    };
    log_access(
        vault,
        "foia",
        &format!(
            "{} redacted {what} of leaf {leaf} in case {} under {}",
            caller.name, case.id, exemption
        ),
    );
    Ok(redaction)
}

/// `POST /v1/foia/cases/{id}/names`: a person's name withheld in every record of the case
/// where it appears, now and in records added later.
pub fn redact_name(
    vault: &mut Vault,
    caller: &Caller,
    id: &str,
    user: &str,
    exemption: Exemption,
) -> Result<NameRedaction, FoiaError> {
    allowed(caller, Permission::Cases)?;
    let user = text_field("a user name", user, 64)?;
    let mut case = load_open(vault, id)?;
    if case.names.iter().any(|n| n.user == user) {
        return Err(FoiaError::Conflict(
            "that name is already redacted throughout the case".into(),
        ));
    }
    let redaction = NameRedaction {
        id: case.last_redaction + 1,
        user,
        exemption,
        by: caller.name.clone(),
        at: now_ms(),
    };
    case.last_redaction = redaction.id;
    case.names.push(redaction.clone());
    store(vault, &case)?;
    log_access(
        vault,
        "foia",
        &format!(
            "{} redacted a name throughout case {} under {}",
            caller.name, case.id, exemption
        ),
    );
    Ok(redaction)
}

/// `DELETE /v1/foia/cases/{id}/redactions/{rid}`: a record's or a case-wide redaction.
pub fn remove_redaction(
    vault: &mut Vault,
    caller: &Caller,
    id: &str,
    redaction: u64,
) -> Result<(), FoiaError> {
    allowed(caller, Permission::Cases)?;
    let mut case = load_open(vault, id)?;
    let before: usize =
        case.names.len() + case.items.iter().map(|i| i.redactions.len()).sum::<usize>();
    case.names.retain(|n| n.id != redaction);
    for item in &mut case.items {
        item.redactions.retain(|r| r.id != redaction);
    }
    let after: usize =
        case.names.len() + case.items.iter().map(|i| i.redactions.len()).sum::<usize>();
    if before == after {
        return Err(FoiaError::NoSuchRedaction {
            case: case.id,
            id: redaction,
        });
    }
    store(vault, &case)?;
    log_access(
        vault,
        "foia",
        &format!(
            "{} removed redaction {redaction} from case {}",
            caller.name, case.id
        ),
    );
    Ok(())
}

/// Where `name` occurs in `text` as a word (case-insensitive), in Unicode scalar values of
/// `text`. Characters are compared one by one, each lowercased on its own: lowercasing the
/// whole text would shift every later offset after a character whose lowercase is longer
/// ('İ' becomes two), and the box would land beside the name. `_` separates words, so
/// `carol_notes` holds carol.
fn name_spans(text: &str, name: &str) -> Vec<(usize, usize)> {
    let text: Vec<char> = text.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let word = |c: Option<&char>| c.is_some_and(|c| c.is_alphanumeric());
    let same = |a: char, b: char| a == b || a.to_lowercase().eq(b.to_lowercase());
    let mut out = Vec::new();
    if name.is_empty() || text.len() < name.len() {
        return out;
    }
    for at in 0..=text.len() - name.len() {
        if text[at..at + name.len()]
            .iter()
            .zip(&name)
            .all(|(a, b)| same(*a, *b))
            && !word(at.checked_sub(1).and_then(|b| text.get(b)))
            && !word(text.get(at + name.len()))
        {
            out.push((at, at + name.len()));
        }
    }
    out
}

/// What review decided for one record, as the production writes it. A participant's name
/// redacted (by a record's redaction, the sender field, or case-wide) is withheld everywhere
/// it appears in the record: its metadata and its text. Overlapping text spans are merged
/// under the exemption of the one that starts first.
pub fn treatment(case: &Case, item: &CaseItem, record: &Record) -> Treatment {
    if let Some(whole) = item
        .redactions
        .iter()
        .find(|r| r.target == RedactionTarget::Whole)
    {
        return Treatment::Withhold {
            exemption: whole.exemption,
        };
    }
    let mut spans: Vec<(usize, usize, Exemption)> = Vec::new();
    let mut fields: Vec<FieldRedaction> = Vec::new();
    let mut names: Vec<(String, Exemption)> = Vec::new();
    let mut field = |field: RedactableField, exemption: Exemption| {
        if !fields.iter().any(|f| f.field == field) {
            fields.push(FieldRedaction { field, exemption });
        }
    };
    for r in &item.redactions {
        match &r.target {
            RedactionTarget::Span { start, end } => spans.push((*start, *end, r.exemption)),
            RedactionTarget::Field {
                field: MetadataField::Sender,
            } => {
                field(RedactableField::Sender, r.exemption);
                names.push((record.sender_user.clone(), r.exemption));
            }
            RedactionTarget::Field {
                field: MetadataField::ChatTitle,
            } => field(RedactableField::ChatTitle, r.exemption),
            RedactionTarget::Field {
                field: MetadataField::AttachmentName,
            } => field(RedactableField::AttachmentName, r.exemption),
            RedactionTarget::Participant { user } => names.push((user.clone(), r.exemption)),
            RedactionTarget::Whole => {}
        }
    }
    let present = people(record);
    for n in &case.names {
        if present.contains(n.user.as_str())
            || record
                .text
                .as_deref()
                .is_some_and(|t| !name_spans(t, &n.user).is_empty())
        {
            names.push((n.user.clone(), n.exemption));
        }
    }
    for (user, exemption) in names {
        if present.contains(user.as_str()) {
            if user == record.sender_user {
                field(RedactableField::Sender, exemption);
            }
            field(RedactableField::Participant(user.clone()), exemption);
        }
        if let Some(text) = &record.text {
            spans.extend(
                name_spans(text, &user)
                    .into_iter()
                    .map(|(s, e)| (s, e, exemption)),
            );
        }
    }
    spans.sort();
    let mut text: Vec<TextRedaction> = Vec::new();
    for (start, end, exemption) in spans {
        match text.last_mut() {
            Some(last) if start <= last.end => last.end = last.end.max(end),
            _ => text.push(TextRedaction {
                start,
                end,
                exemption,
            }),
        }
    }
    Treatment::Release { text, fields }
}

/// What a production of case `id` is made of: its responsive records, in chat then log
/// order, each with its treatment.
pub fn selection(
    vault: &mut Vault,
    caller: &Caller,
    id: &str,
) -> Result<(Case, Vec<Selection>), FoiaError> {
    allowed(caller, Permission::Produce)?;
    let case = load(vault, id)?;
    let mut chosen = Vec::new();
    for item in case.items.iter().filter(|i| i.mark == Mark::Responsive) {
        let record = open_record(vault, item.leaf)?;
        chosen.push((
            record.chat_id.clone(),
            item.leaf,
            treatment(&case, item, &record),
        ));
    }
    if chosen.is_empty() {
        return Err(FoiaError::Invalid(format!(
            "case {} has no record marked responsive: nothing to produce",
            case.id
        )));
    }
    chosen.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let selection = chosen
        .into_iter()
        .map(|(_, leaf, treatment)| Selection { leaf, treatment })
        .collect();
    Ok((case, selection))
}

/// A production of case `id` finished (its job's thread reports it on the actor): an open
/// case or one in review becomes produced.
/// `bates_last` is the production's last Bates counter: the next production continues after
/// it.
pub fn produced(
    vault: &mut Vault,
    id: &str,
    job: &str,
    records: u64,
    bates_last: Option<u64>,
) -> Result<(), FoiaError> {
    let mut case = load(vault, id)?;
    if matches!(case.status, CaseStatus::Open | CaseStatus::InReview) {
        case.status = CaseStatus::Produced;
    }
    if let Some(last) = bates_last {
        case.bates_next = Some(case.bates_next.unwrap_or(1).max(last + 1));
    }
    store(vault, &case)?;
    log_access(
        vault,
        "foia",
        &format!("production {job} of case {id} finished ({records} records)"),
    );
    Ok(())
}

/// The record leaves of every case not closed, with the case holding each: disposition
/// keeps them. Without any case, nothing to open (and no key needed).
pub fn leaves_in_open_cases(vault: &Vault) -> Result<HashMap<u64, String>, FoiaError> {
    let mut out = HashMap::new();
    for case in all_cases(vault)? {
        if case.status == CaseStatus::Closed {
            continue;
        }
        for item in &case.items {
            out.entry(item.leaf).or_insert_with(|| case.id.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
