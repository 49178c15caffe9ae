//! FOIA cases, review, redaction and productions (issue 11).
//!
//! Owned by the cases work. `Exemption` is shared with the production format.

use serde::{Deserialize, Serialize};

/// A FOIA exemption, 5 U.S.C. 552(b)(1)-(b)(9), with (b)(7)(A)-(F).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum Exemption {
    #[serde(rename = "b1")]
    B1,
    #[serde(rename = "b2")]
    B2,
    #[serde(rename = "b3")]
    B3,
    #[serde(rename = "b4")]
    B4,
    #[serde(rename = "b5")]
    B5,
    #[serde(rename = "b6")]
    B6,
    #[serde(rename = "b7a")]
    B7A,
    #[serde(rename = "b7b")]
    B7B,
    #[serde(rename = "b7c")]
    B7C,
    #[serde(rename = "b7d")]
    B7D,
    #[serde(rename = "b7e")]
    B7E,
    #[serde(rename = "b7f")]
    B7F,
    #[serde(rename = "b8")]
    B8,
    #[serde(rename = "b9")]
    B9,
}

impl Exemption {
    pub const ALL: [Exemption; 14] = [
        Exemption::B1,
        Exemption::B2,
        Exemption::B3,
        Exemption::B4,
        Exemption::B5,
        Exemption::B6,
        Exemption::B7A,
        Exemption::B7B,
        Exemption::B7C,
        Exemption::B7D,
        Exemption::B7E,
        Exemption::B7F,
        Exemption::B8,
        Exemption::B9,
    ];

    /// The short form used on the command line and in JSON: `b6`, `b7c`.
    pub fn as_str(self) -> &'static str {
        match self {
            Exemption::B1 => "b1",
            Exemption::B2 => "b2",
            Exemption::B3 => "b3",
            Exemption::B4 => "b4",
            Exemption::B5 => "b5",
            Exemption::B6 => "b6",
            Exemption::B7A => "b7a",
            Exemption::B7B => "b7b",
            Exemption::B7C => "b7c",
            Exemption::B7D => "b7d",
            Exemption::B7E => "b7e",
            Exemption::B7F => "b7f",
            Exemption::B8 => "b8",
            Exemption::B9 => "b9",
        }
    }

    /// The label burned into a redaction box and written in the withholding log: `(b)(6)`,
    /// `(b)(7)(C)`.
    pub fn label(self) -> &'static str {
        match self {
            Exemption::B1 => "(b)(1)",
            Exemption::B2 => "(b)(2)",
            Exemption::B3 => "(b)(3)",
            Exemption::B4 => "(b)(4)",
            Exemption::B5 => "(b)(5)",
            Exemption::B6 => "(b)(6)",
            Exemption::B7A => "(b)(7)(A)",
            Exemption::B7B => "(b)(7)(B)",
            Exemption::B7C => "(b)(7)(C)",
            Exemption::B7D => "(b)(7)(D)",
            Exemption::B7E => "(b)(7)(E)",
            Exemption::B7F => "(b)(7)(F)",
            Exemption::B8 => "(b)(8)",
            Exemption::B9 => "(b)(9)",
        }
    }

    /// Accepts `b6`, `B6`, `(b)(6)`, `b7c`, `(b)(7)(C)`.
    pub fn parse(s: &str) -> Option<Exemption> {
        let compact: String = s
            .chars()
            .filter(|c| !matches!(c, '(' | ')' | ' '))
            .flat_map(char::to_lowercase)
            .collect();
        Exemption::ALL.into_iter().find(|e| e.as_str() == compact)
    }
}

impl std::fmt::Display for Exemption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Where a case stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    /// Received; records are being gathered.
    Open,
    /// The review set is being reviewed and redacted.
    InReview,
    /// A production went out; the case can still be amended and produced again.
    Produced,
    /// Answered. Its records fall under their schedules again.
    Closed,
}

impl CaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Open => "open",
            CaseStatus::InReview => "in_review",
            CaseStatus::Produced => "produced",
            CaseStatus::Closed => "closed",
        }
    }
}

/// `POST /v1/foia/cases`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCase {
    /// Who asked (a person or an organisation), 1-200 characters.
    pub requester: String,
    /// The request as received, 1-4000 characters.
    pub description: String,
    /// The day the request was received (`2026-11-20`), in the office's time zone; default
    /// today. The due date is counted from it.
    #[serde(default)]
    pub received: Option<String>,
}

/// `PATCH /v1/foia/cases/{id}`: what is absent stays.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCase {
    #[serde(default)]
    pub status: Option<CaseStatus>,
    /// An analyst's or officer's account name.
    #[serde(default)]
    pub analyst: Option<String>,
    /// A due date set by hand (`2026-12-31`: an extension, or a state law's deadline).
    #[serde(default)]
    pub due: Option<String>,
}

/// `POST /v1/foia/cases/{id}/notes`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddNote {
    /// 1-10,000 characters.
    pub text: String,
}

/// A note on a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Note {
    pub author: String,
    /// Unix ms.
    pub at: i64,
    pub text: String,
}

/// `POST /v1/foia/cases/{id}/leaves`: records added by their leaf index.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddLeaves {
    pub leaves: Vec<u64>,
}

/// What an addition to the review set did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Added {
    /// Leaves new to the review set.
    pub added: Vec<u64>,
    /// How many were in it already.
    pub already: u64,
}

/// A reviewer's decision on one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    Unreviewed,
    Responsive,
    NotResponsive,
}

impl Mark {
    pub fn as_str(self) -> &'static str {
        match self {
            Mark::Unreviewed => "unreviewed",
            Mark::Responsive => "responsive",
            Mark::NotResponsive => "not responsive",
        }
    }
}

/// `PUT /v1/foia/cases/{id}/items/{leaf}/review`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewRequest {
    pub mark: Mark,
}

/// Metadata a redaction can withhold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetadataField {
    /// The sender's name (and device), everywhere it appears in the record.
    Sender,
    ChatTitle,
    AttachmentName,
}

impl MetadataField {
    pub fn as_str(self) -> &'static str {
        match self {
            MetadataField::Sender => "sender",
            MetadataField::ChatTitle => "chat-title",
            MetadataField::AttachmentName => "attachment-name",
        }
    }

    /// Accepts `sender`, `chat-title`, `chat_title`, `attachment-name`, `attachment_name`.
    pub fn parse(s: &str) -> Option<MetadataField> {
        let s = s.replace('_', "-");
        [
            MetadataField::Sender,
            MetadataField::ChatTitle,
            MetadataField::AttachmentName,
        ]
        .into_iter()
        .find(|f| f.as_str() == s)
    }
}

/// What a redaction withholds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RedactionTarget {
    /// Characters `start..end` of the text, in Unicode scalar values.
    Span {
        start: usize,
        end: usize,
    },
    Field {
        field: MetadataField,
    },
    /// A participant's name wherever it appears in the record (sender, recipients,
    /// mentions, and the text).
    Participant {
        user: String,
    },
    /// The whole record is withheld.
    Whole,
}

/// `POST /v1/foia/cases/{id}/items/{leaf}/redactions`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedactRequest {
    pub exemption: Exemption,
    pub target: RedactionTarget,
}

/// A redaction in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Redaction {
    /// Its number within the case (to remove it by).
    pub id: u64,
    pub exemption: Exemption,
    pub target: RedactionTarget,
    pub by: String,
    /// Unix ms.
    pub at: i64,
}

/// `POST /v1/foia/cases/{id}/names`: a person's name withheld in every record of the case.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedactName {
    pub user: String,
    pub exemption: Exemption,
}

/// A case-wide name redaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NameRedaction {
    pub id: u64,
    pub user: String,
    pub exemption: Exemption,
    pub by: String,
    pub at: i64,
}

/// One record of a case's review set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CaseItem {
    pub leaf: u64,
    pub added_by: String,
    pub added_at: i64,
    pub mark: Mark,
    /// Who marked it, and when (Unix ms); absent while unreviewed.
    #[serde(default)]
    pub marked_by: Option<String>,
    #[serde(default)]
    pub marked_at: Option<i64>,
    #[serde(default)]
    pub redactions: Vec<Redaction>,
}

/// A FOIA case: sealed at rest as one document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Case {
    /// `FOIA-2026-0001`.
    pub id: String,
    pub requester: String,
    pub description: String,
    /// `2026-11-20`, in the office's time zone.
    pub received: String,
    pub due: String,
    /// The due date was set by hand rather than counted.
    #[serde(default)]
    pub due_overridden: bool,
    pub status: CaseStatus,
    #[serde(default)]
    pub analyst: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    #[serde(default)]
    pub notes: Vec<Note>,
    /// The review set, in the order records were added.
    #[serde(default)]
    pub items: Vec<CaseItem>,
    #[serde(default)]
    pub names: Vec<NameRedaction>,
    /// The last redaction number given.
    #[serde(default)]
    pub last_redaction: u64,
    /// The Bates number the case's next production starts at: numbers never repeat across
    /// the productions of one case (absent: 1).
    #[serde(default)]
    pub bates_next: Option<u64>,
}

/// A case as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CaseSummary {
    pub id: String,
    pub requester: String,
    pub status: CaseStatus,
    pub received: String,
    pub due: String,
    pub analyst: Option<String>,
    pub items: u64,
    pub unreviewed: u64,
    pub responsive: u64,
}

/// `GET /v1/foia/cases/{id}`: the case with its records, opened.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CaseDetail {
    pub case: Case,
    /// The review set's records (those not disposed), in the case's order.
    pub records: Vec<crate::api::search::ContextRecord>,
}

/// `POST /v1/foia/cases/{id}/productions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartProduction {
    /// Bates prefix: 1-20 characters, letters, digits, '-' and '_' (default: the case id).
    #[serde(default)]
    pub bates_prefix: Option<String>,
    /// Any of `rsmf`, `pdf`, `csv` (default: all). The manifest and withholding log are
    /// always written.
    #[serde(default)]
    pub formats: Vec<String>,
}

/// Where a production job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    /// The zip is ready to download (once).
    Done,
    Failed,
    /// Downloaded, or dropped when the archive sealed.
    Gone,
}

/// `GET /v1/foia/cases/{id}/productions/{job}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProductionJob {
    pub job: String,
    pub case_id: String,
    pub state: JobState,
    /// Records written so far, of `total`.
    pub done: u64,
    pub total: u64,
    #[serde(default)]
    pub error: Option<String>,
    /// The production's summary once done (files, counts, Bates range).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub summary: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exemptions_parse_in_every_written_form() {
        for e in Exemption::ALL {
            assert_eq!(Exemption::parse(e.as_str()), Some(e));
            assert_eq!(Exemption::parse(e.label()), Some(e));
        }
        assert_eq!(Exemption::parse("(b)(7)(C)"), Some(Exemption::B7C));
        assert_eq!(Exemption::parse("B6"), Some(Exemption::B6));
        for bad in ["b10", "b7", "b7g", "", "6", "exemption 6"] {
            assert_eq!(Exemption::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn issue_11_redaction_targets_and_fields_read_as_written() {
        let req: RedactRequest = serde_json::from_str(
            r#"{"exemption":"b7c","target":{"kind":"span","start":3,"end":9}}"#,
        )
        .unwrap();
        assert_eq!(req.exemption, Exemption::B7C);
        assert_eq!(req.target, RedactionTarget::Span { start: 3, end: 9 });
        let field: RedactRequest = serde_json::from_str(
            r#"{"exemption":"b6","target":{"kind":"field","field":"chat_title"}}"#,
        )
        .unwrap();
        assert_eq!(
            field.target,
            RedactionTarget::Field {
                field: MetadataField::ChatTitle
            }
        );
        for bad in [
            r#"{"exemption":"b10","target":{"kind":"whole"}}"#,
            r#"{"exemption":"b6","target":{"kind":"everything"}}"#,
            r#"{"exemption":"b6","target":{"kind":"whole"},"extra":1}"#,
        ] {
            assert!(serde_json::from_str::<RedactRequest>(bad).is_err(), "{bad}");
        }
        for f in ["sender", "chat-title", "chat_title", "attachment-name"] {
            assert!(MetadataField::parse(f).is_some(), "{f}");
        }
        assert_eq!(MetadataField::parse("recipient"), None);
    }
}
