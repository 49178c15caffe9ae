//! What each produced record shows once review's redactions are applied: the one place that
//! decides what is withheld, so that the RSMF, the PDF, the CSV files and the manifest all
//! show (and prove) exactly the same thing.
//!
//! Metadata redactions are made consistent across the production: a participant whose name is
//! withheld in any record is withheld in every record (one record naming them would unmask the
//! others), as is a chat's title and an attachment's name.

use std::collections::BTreeMap;

use vellum_record::api::foia::Exemption;
use vellum_record::{Record, RecordKind};

use crate::{Error, ProducedItem, ProductionInput, RedactableField, Treatment};

/// A piece of produced text: shown, or withheld under one or more exemptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Text(String),
    Redacted(Vec<Exemption>),
}

/// What stands in for withheld text everywhere the production writes text.
pub(crate) fn placeholder(exemptions: &[Exemption]) -> String {
    format!("[REDACTED {}]", label(exemptions))
}

/// `(b)(6)` or `(b)(6), (b)(7)(C)`.
pub(crate) fn label(exemptions: &[Exemption]) -> String {
    exemptions
        .iter()
        .map(|e| e.label())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value of metadata as produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shown {
    Plain(String),
    Redacted {
        exemption: Exemption,
        /// What stands in for it (the same for the same value across the production).
        placeholder: String,
    },
}

impl Shown {
    pub(crate) fn text(&self) -> &str {
        match self {
            Shown::Plain(s) => s,
            Shown::Redacted { placeholder, .. } => placeholder,
        }
    }

    pub(crate) fn exemption(&self) -> Option<Exemption> {
        match self {
            Shown::Plain(_) => None,
            Shown::Redacted { exemption, .. } => Some(*exemption),
        }
    }
}

/// The production-wide metadata redactions.
#[derive(Debug, Default)]
pub(crate) struct Withheld {
    /// User name to its exemption and its number among withheld names (from 1).
    users: BTreeMap<String, (Exemption, usize)>,
    /// Chat id to the exemption of its title.
    titles: BTreeMap<String, Exemption>,
    /// Attachment blob to the exemption of its name.
    names: BTreeMap<String, Exemption>,
}

impl Withheld {
    fn collect(items: &[ProducedItem]) -> Self {
        let mut w = Withheld::default();
        for item in items {
            let Treatment::Release { fields, .. } = &item.treatment else {
                continue;
            };
            let r = &item.record;
            for f in fields {
                match &f.field {
                    RedactableField::Sender => w.user(&r.sender_user, f.exemption),
                    RedactableField::Participant(user) => w.user(user, f.exemption),
                    RedactableField::ChatTitle => {
                        w.titles.entry(r.chat_id.clone()).or_insert(f.exemption);
                    }
                    RedactableField::AttachmentName => {
                        if let RecordKind::Attachment(file) = &r.kind {
                            w.names.entry(file.blob.clone()).or_insert(f.exemption);
                        }
                    }
                }
            }
        }
        w
    }

    fn user(&mut self, user: &str, exemption: Exemption) {
        let next = self.users.len() + 1;
        self.users
            .entry(user.to_owned())
            .or_insert((exemption, next));
    }

    /// A user as produced.
    pub(crate) fn person(&self, user: &str) -> Shown {
        match self.users.get(user) {
            None => Shown::Plain(user.to_owned()),
            Some((exemption, n)) => Shown::Redacted {
                exemption: *exemption,
                placeholder: format!("[REDACTED {} #{n}]", exemption.label()),
            },
        }
    }

    /// A chat's title as produced.
    pub(crate) fn title(&self, chat_id: &str, title: &str) -> Shown {
        match self.titles.get(chat_id) {
            None => Shown::Plain(title.to_owned()),
            Some(e) => Shown::Redacted {
                exemption: *e,
                placeholder: placeholder(&[*e]),
            },
        }
    }

    /// Every withheld user, with their exemption and placeholder, by number (for the log).
    pub(crate) fn users(&self) -> Vec<(Exemption, String)> {
        let mut users: Vec<_> = self.users.iter().map(|(u, (e, n))| (*n, *e, u)).collect();
        users.sort();
        users
            .into_iter()
            .map(|(_, e, u)| (e, self.person(u).text().to_owned()))
            .collect()
    }
}

/// One released record as produced.
#[derive(Debug)]
pub(crate) struct View<'a> {
    pub item: &'a ProducedItem,
    pub sender: Shown,
    pub recipients: Vec<Shown>,
    pub mentions: Vec<Shown>,
    pub chat_title: Option<Shown>,
    /// The record's text, with its redactions; `None` if it has none.
    pub text: Option<Vec<Piece>>,
    pub attachment_name: Option<Shown>,
}

impl View<'_> {
    pub(crate) fn record(&self) -> &Record {
        &self.item.record
    }

    /// The produced text, placeholders in place of what is withheld.
    pub(crate) fn text_string(&self) -> Option<String> {
        self.text.as_ref().map(|pieces| {
            pieces
                .iter()
                .map(|p| match p {
                    Piece::Text(t) => t.clone(),
                    Piece::Redacted(e) => placeholder(e),
                })
                .collect()
        })
    }

    pub(crate) fn text_redacted(&self) -> bool {
        self.text
            .as_ref()
            .is_some_and(|p| p.iter().any(|p| matches!(p, Piece::Redacted(_))))
    }

    /// The exemptions of the record's withheld parts, for the withholding log: (what, label).
    pub(crate) fn redactions(&self) -> Vec<(&'static str, Vec<Exemption>)> {
        let mut out = Vec::new();
        for p in self.text.iter().flatten() {
            if let Piece::Redacted(e) = p {
                out.push(("text", e.clone()));
            }
        }
        out.extend(self.sender.exemption().map(|e| ("sender", vec![e])));
        for r in self.recipients.iter().chain(&self.mentions) {
            out.extend(r.exemption().map(|e| ("participant", vec![e])));
        }
        out.extend(
            self.chat_title
                .as_ref()
                .and_then(Shown::exemption)
                .map(|e| ("chat_title", vec![e])),
        );
        out.extend(
            self.attachment_name
                .as_ref()
                .and_then(Shown::exemption)
                .map(|e| ("attachment_name", vec![e])),
        );
        out
    }

    /// The committed fields produced exactly as sealed, which the manifest opens; the others
    /// (with the exemption that withholds them) get no opening.
    pub(crate) fn produced_fields(
        &self,
    ) -> (Vec<&'static str>, Vec<(&'static str, Vec<Exemption>)>) {
        let r = self.record();
        let mut open = vec!["kind", "chat_id"];
        let mut closed = Vec::new();
        if r.message_id.is_some() {
            open.push("message_id");
        }
        match self.sender.exemption() {
            None => open.extend(["sender_user", "sender_device"]),
            Some(e) => {
                closed.push(("sender_user", vec![e]));
                closed.push(("sender_device", vec![e]));
            }
        }
        open.push("sent_at");
        if r.text.is_some() {
            if self.text_redacted() {
                let mut all: Vec<Exemption> = self
                    .text
                    .iter()
                    .flatten()
                    .filter_map(|p| match p {
                        Piece::Redacted(e) => Some(e.clone()),
                        Piece::Text(_) => None,
                    })
                    .flatten()
                    .collect();
                all.sort();
                all.dedup();
                closed.push(("text", all));
            } else {
                open.push("text");
            }
        }
        (open, closed)
    }
}

/// The released records as produced, in input order, and the production-wide redactions.
pub(crate) fn views(input: &ProductionInput) -> Result<(Vec<View<'_>>, Withheld), Error> {
    let withheld = Withheld::collect(&input.items);
    let mut out = Vec::new();
    for item in &input.items {
        let Treatment::Release { text, .. } = &item.treatment else {
            continue;
        };
        let r = &item.record;
        let invalid = |m: &str| Error::Invalid(format!("leaf {}: {m}", item.leaf));
        let mut pieces = match &r.text {
            None if !text.is_empty() => {
                return Err(invalid("a text redaction on a record without text"))
            }
            None => None,
            Some(t) => Some(apply_spans(t, text).map_err(|m| invalid(&m))?),
        };
        // What the archive generated about people or the title is withheld with them.
        match r.kind {
            RecordKind::Title if withheld.titles.contains_key(&r.chat_id) => {
                let e = withheld.titles[&r.chat_id];
                pieces = pieces.map(|_| vec![Piece::Redacted(vec![e])]);
            }
            RecordKind::Membership => {
                pieces = pieces.map(|p| scrub_users(p, &withheld));
            }
            _ => {}
        }
        let attachment_name = match &r.kind {
            RecordKind::Attachment(file) => Some(match withheld.names.get(&file.blob) {
                Some(e) => Shown::Redacted {
                    exemption: *e,
                    placeholder: placeholder(&[*e]),
                },
                None => Shown::Plain(file.name.clone()),
            }),
            _ => None,
        };
        out.push(View {
            item,
            sender: withheld.person(&r.sender_user),
            recipients: r
                .recipients
                .iter()
                .map(|m| withheld.person(&m.user))
                .collect(),
            mentions: r.mentions.iter().map(|u| withheld.person(u)).collect(),
            chat_title: r
                .chat_title
                .as_deref()
                .map(|t| withheld.title(&r.chat_id, t)),
            text: pieces,
            attachment_name,
        });
    }
    Ok((out, withheld))
}

/// Splits `text` at the redaction spans (Unicode scalar values); overlapping spans merge.
fn apply_spans(text: &str, spans: &[crate::TextRedaction]) -> Result<Vec<Piece>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut spans: Vec<_> = spans.to_vec();
    spans.sort_by_key(|s| (s.start, s.end));
    let mut merged: Vec<(usize, usize, Vec<Exemption>)> = Vec::new();
    for s in spans {
        if s.start >= s.end || s.end > chars.len() {
            return Err(format!(
                "redaction {}..{} is outside the text's {} characters",
                s.start,
                s.end,
                chars.len()
            ));
        }
        match merged.last_mut() {
            Some(last) if s.start < last.1 => {
                last.1 = last.1.max(s.end);
                if !last.2.contains(&s.exemption) {
                    last.2.push(s.exemption);
                }
            }
            _ => merged.push((s.start, s.end, vec![s.exemption])),
        }
    }
    let mut pieces = Vec::new();
    let mut at = 0;
    for (start, end, exemptions) in merged {
        if start > at {
            pieces.push(Piece::Text(chars[at..start].iter().collect()));
        }
        pieces.push(Piece::Redacted(exemptions));
        at = end;
    }
    if at < chars.len() || pieces.is_empty() {
        pieces.push(Piece::Text(chars[at..].iter().collect()));
    }
    Ok(pieces)
}

/// Withholds the names of withheld users inside archive-generated text (who joined or left).
fn scrub_users(pieces: Vec<Piece>, withheld: &Withheld) -> Vec<Piece> {
    let mut out = pieces;
    for (user, (exemption, _)) in &withheld.users {
        out = out
            .into_iter()
            .flat_map(|p| match p {
                Piece::Text(t) if !user.is_empty() && t.contains(user.as_str()) => {
                    let mut split = Vec::new();
                    for (i, part) in t.split(user.as_str()).enumerate() {
                        if i > 0 {
                            split.push(Piece::Redacted(vec![*exemption]));
                        }
                        if !part.is_empty() {
                            split.push(Piece::Text(part.to_owned()));
                        }
                    }
                    split
                }
                p => vec![p],
            })
            .collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TextRedaction;

    #[test]
    fn spans_count_unicode_scalars_and_overlaps_merge() {
        let spans = [
            TextRedaction {
                start: 2,
                end: 4,
                exemption: Exemption::B6,
            },
            TextRedaction {
                start: 3,
                end: 5,
                exemption: Exemption::B5,
            },
        ];
        let pieces = apply_spans("héllo!", &spans).unwrap();
        assert_eq!(
            pieces,
            vec![
                Piece::Text("hé".into()),
                Piece::Redacted(vec![Exemption::B6, Exemption::B5]),
                Piece::Text("!".into()),
            ]
        );
        for bad in [(0, 7), (3, 3)] {
            let span = TextRedaction {
                start: bad.0,
                end: bad.1,
                exemption: Exemption::B6,
            };
            assert!(apply_spans("héllo!", &[span]).is_err(), "{bad:?}");
        }
    }
}
