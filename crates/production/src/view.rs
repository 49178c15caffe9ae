//! What each produced record shows once review's redactions are applied: the one place that
//! decides what is withheld, so that the RSMF, the PDF, the CSV files and the manifest all
//! show (and prove) exactly the same thing.
//!
//! Metadata redactions are made consistent across the production: a participant whose name is
//! withheld in any record is withheld in every record (one record naming them would unmask the
//! others), as is a chat's title and an attachment's name. A withheld participant's name (and
//! their device ids) is also withheld wherever it appears in released text, chat titles and
//! file names, shown as the same numbered placeholder as in the metadata.

use std::collections::BTreeMap;

use vellum_record::api::foia::Exemption;
use vellum_record::{Record, RecordKind};

use crate::{Error, ProducedItem, ProductionInput, RedactableField, Treatment};

/// A piece of produced text: shown, or withheld under one or more exemptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Text(String),
    Redacted(Vec<Exemption>),
    /// A withheld participant's name or device id, shown as their numbered placeholder.
    Name {
        exemption: Exemption,
        placeholder: String,
    },
}

/// What stands in for withheld text everywhere the production writes text.
pub(crate) fn placeholder(exemptions: &[Exemption]) -> String {
    format!("[REDACTED {}]", label(exemptions))
}

/// What stands in for the `n`th withheld person.
fn numbered(exemption: Exemption, n: usize) -> String {
    format!("[REDACTED {} #{n}]", exemption.label())
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
    /// Shown, but with withheld participants' names inside it replaced by their placeholders.
    Scrubbed {
        exemption: Exemption,
        text: String,
    },
}

impl Shown {
    pub(crate) fn text(&self) -> &str {
        match self {
            Shown::Plain(s) => s,
            Shown::Redacted { placeholder, .. } => placeholder,
            Shown::Scrubbed { text, .. } => text,
        }
    }

    pub(crate) fn exemption(&self) -> Option<Exemption> {
        match self {
            Shown::Plain(_) => None,
            Shown::Redacted { exemption, .. } | Shown::Scrubbed { exemption, .. } => {
                Some(*exemption)
            }
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
    /// What is searched for in produced text: each withheld user's name and device ids,
    /// longest first (so a longer name is not cut short by a shorter one inside it).
    needles: Vec<(Vec<char>, Exemption, String)>,
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
        w.find_needles(items);
        w
    }

    /// Device ids are known from every record (sent from or delivered to them): the archive's
    /// membership text prints them next to names, so they would identify a withheld user. They
    /// are also sought as chat events shorten them (eight characters and `…`).
    fn find_needles(&mut self, items: &[ProducedItem]) {
        let mut found: BTreeMap<String, &str> = BTreeMap::new();
        for user in self.users.keys() {
            found.insert(user.clone(), user);
        }
        for item in items {
            let r = &item.record;
            let devices = std::iter::once((&r.sender_user, &r.sender_device))
                .chain(r.recipients.iter().map(|m| (&m.user, &m.device_id)));
            for (user, device) in devices {
                if let Some((known, _)) = self.users.get_key_value(user.as_str()) {
                    found.entry(device.clone()).or_insert(known);
                    if let Some((end, _)) = device.char_indices().nth(8) {
                        found.entry(format!("{}…", &device[..end])).or_insert(known);
                    }
                }
            }
        }
        let mut needles: Vec<_> = found
            .into_iter()
            .filter(|(needle, _)| !needle.is_empty())
            .map(|(needle, user)| {
                let (exemption, n) = self.users[user];
                (
                    needle.chars().collect::<Vec<_>>(),
                    exemption,
                    numbered(exemption, n),
                )
            })
            .collect();
        needles.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        self.needles = needles;
    }

    /// Free text (a title, a file name) as produced: withheld users' names replaced.
    fn scrubbed(&self, text: &str) -> Shown {
        let pieces = scrub_users(vec![Piece::Text(text.to_owned())], self);
        let exemption = pieces.iter().find_map(|p| match p {
            Piece::Name { exemption, .. } => Some(*exemption),
            _ => None,
        });
        match exemption {
            None => Shown::Plain(text.to_owned()),
            Some(exemption) => Shown::Scrubbed {
                exemption,
                text: pieces_string(&pieces),
            },
        }
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
                placeholder: numbered(*exemption, *n),
            },
        }
    }

    /// A chat's title as produced.
    pub(crate) fn title(&self, chat_id: &str, title: &str) -> Shown {
        match self.titles.get(chat_id) {
            None => self.scrubbed(title),
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
        self.text.as_deref().map(pieces_string)
    }

    pub(crate) fn text_redacted(&self) -> bool {
        self.text
            .as_ref()
            .is_some_and(|p| p.iter().any(|p| !matches!(p, Piece::Text(_))))
    }

    /// The exemptions of the record's withheld parts, for the withholding log: (what, label).
    pub(crate) fn redactions(&self) -> Vec<(&'static str, Vec<Exemption>)> {
        let mut out = Vec::new();
        for p in self.text.iter().flatten() {
            match p {
                Piece::Redacted(e) => out.push(("text", e.clone())),
                Piece::Name { exemption, .. } => out.push(("text", vec![*exemption])),
                Piece::Text(_) => {}
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
                        Piece::Name { exemption, .. } => Some(vec![*exemption]),
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
        // A withheld title is withheld with the record that set it; a withheld person is
        // withheld in every text (one released message naming them would unmask the rest).
        match r.kind {
            RecordKind::Title if withheld.titles.contains_key(&r.chat_id) => {
                let e = withheld.titles[&r.chat_id];
                pieces = pieces.map(|_| vec![Piece::Redacted(vec![e])]);
            }
            _ => pieces = pieces.map(|p| scrub_users(p, &withheld)),
        }
        let attachment_name = match &r.kind {
            RecordKind::Attachment(file) => Some(match withheld.names.get(&file.blob) {
                Some(e) => Shown::Redacted {
                    exemption: *e,
                    placeholder: placeholder(&[*e]),
                },
                None => withheld.scrubbed(&file.name),
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

/// The produced text of pieces, placeholders in place of what is withheld.
fn pieces_string(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) => t.clone(),
            Piece::Redacted(e) => placeholder(e),
            Piece::Name { placeholder, .. } => placeholder.clone(),
        })
        .collect()
}

/// Withholds withheld users' names and device ids inside text: matched case-insensitively
/// as whole words (anything not alphanumeric, `_` included, bounds a word). Matching is char
/// by char on the original text, since lowercasing a whole string can change its length.
fn scrub_users(pieces: Vec<Piece>, withheld: &Withheld) -> Vec<Piece> {
    let mut out = Vec::new();
    for p in pieces {
        let Piece::Text(t) = p else {
            out.push(p);
            continue;
        };
        if t.is_empty() {
            out.push(Piece::Text(t));
            continue;
        }
        let chars: Vec<char> = t.chars().collect();
        let mut plain = String::new();
        let mut i = 0;
        while i < chars.len() {
            let starts_word = i == 0 || !chars[i - 1].is_alphanumeric();
            let found = starts_word
                .then(|| {
                    withheld.needles.iter().find(|(needle, _, _)| {
                        let end = i + needle.len();
                        end <= chars.len()
                            && chars[i..end].iter().zip(needle).all(|(a, b)| same(*a, *b))
                            && chars.get(end).is_none_or(|c| !c.is_alphanumeric())
                    })
                })
                .flatten();
            match found {
                Some((needle, exemption, placeholder)) => {
                    if !plain.is_empty() {
                        out.push(Piece::Text(std::mem::take(&mut plain)));
                    }
                    out.push(Piece::Name {
                        exemption: *exemption,
                        placeholder: placeholder.clone(),
                    });
                    i += needle.len();
                }
                None => {
                    plain.push(chars[i]);
                    i += 1;
                }
            }
        }
        if !plain.is_empty() {
            out.push(Piece::Text(plain));
        }
    }
    out
}

/// Two characters equal ignoring case (each lowercased on its own, so no offset shifts).
fn same(a: char, b: char) -> bool {
    a == b || a.to_lowercase().eq(b.to_lowercase())
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

    fn withheld(users: &[&str], devices: &[(&str, &str)]) -> Withheld {
        let mut w = Withheld::default();
        for u in users {
            w.user(u, Exemption::B6);
        }
        let mut found = Vec::new();
        for (user, device) in users
            .iter()
            .map(|u| (*u, *u))
            .chain(devices.iter().copied())
        {
            let Shown::Redacted { placeholder, .. } = w.person(user) else {
                unreachable!()
            };
            found.push((device.chars().collect(), Exemption::B6, placeholder));
        }
        found.sort_by_key(|n: &(Vec<char>, _, _)| std::cmp::Reverse(n.0.len()));
        w.needles = found;
        w
    }

    fn scrubbed(text: &str, w: &Withheld) -> String {
        pieces_string(&scrub_users(vec![Piece::Text(text.into())], w))
    }

    #[test]
    fn issue_11_names_in_text_match_whole_words_ignoring_case_without_shifting_offsets() {
        let w = withheld(&["carol", "bob", "bob smith"], &[("carol", "97b3-aa")]);
        // 'İ' lowercases to two chars: matching char by char keeps everything after it.
        assert_eq!(
            scrubbed("İİİİ carol knows", &w),
            "İİİİ [REDACTED (b)(6) #1] knows"
        );
        assert_eq!(
            scrubbed("carol_zulu, CAROL and Carol's; caroline, xcarol", &w),
            "[REDACTED (b)(6) #1]_zulu, [REDACTED (b)(6) #1] and [REDACTED (b)(6) #1]'s; \
             caroline, xcarol"
        );
        assert_eq!(
            scrubbed("ask Bob Smith or bob (97B3-AA)", &w),
            "ask [REDACTED (b)(6) #3] or [REDACTED (b)(6) #2] ([REDACTED (b)(6) #1])"
        );
        assert_eq!(scrubbed("nothing here", &w), "nothing here");
        // A span redacted before the scrub keeps its place.
        let spans = [crate::TextRedaction {
            start: 17,
            end: 23,
            exemption: Exemption::B5,
        }];
        let pieces = scrub_users(apply_spans("İİİİ carol knows secret!", &spans).unwrap(), &w);
        assert_eq!(
            pieces_string(&pieces),
            "İİİİ [REDACTED (b)(6) #1] knows [REDACTED (b)(5)]!"
        );
    }
}
