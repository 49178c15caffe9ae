//! The CSV files: `loadfile.csv`, one row per produced record for e-discovery tools, and
//! `withholding_log.csv` (the Vaughn index), one row per record withheld whole and per
//! redaction, each with its exemption and a description that says what kind of thing was
//! withheld, never what it said. The withholding log is written for every production; the
//! load file only when [`crate::Formats::csv`] asks for it.

use std::path::Path;

use sha2::{Digest, Sha256};
use vellum_record::RecordKind;

use crate::pdf::Bates;
use crate::view::{View, Withheld};
use crate::{Error, ProductionInput, Treatment};

pub const LOADFILE: &str = "loadfile.csv";
pub const WITHHOLDING_LOG: &str = "withholding_log.csv";

pub const LOADFILE_COLUMNS: [&str; 14] = [
    "BEGBATES",
    "ENDBATES",
    "RECORD_ID",
    "CHAT_ID",
    "CHAT",
    "KIND",
    "SENDER",
    "PARTICIPANTS",
    "SENT",
    "RECEIVED",
    "MESSAGE_ID",
    "REDACTED",
    "HASH_OF",
    "SHA256",
];

pub const WITHHOLDING_COLUMNS: [&str; 7] = [
    "ENTRY",
    "RECORD_ID",
    "WITHHELD",
    "EXEMPTION",
    "LABEL",
    "DATE",
    "DESCRIPTION",
];

/// What the load file's SHA-256 is of, and the hash: the produced text (placeholders in
/// place of what is withheld) for a record with text, the file for an attachment, else the
/// record's canonical encoding. With the manifest's opening of an unredacted text, the hash
/// ties the text a tool loads to the leaf.
pub(crate) fn produced_hash(v: &View<'_>) -> (&'static str, String) {
    match (&v.record().kind, v.text_string()) {
        (RecordKind::Attachment(file), _) => ("file", file.sha256.clone()),
        (_, Some(text)) => ("text", hex::encode(Sha256::digest(text.as_bytes()))),
        (_, None) => ("record", hex::encode(Sha256::digest(v.record().encode()))),
    }
}

/// A cell as written: one that a spreadsheet would run as a formula (OWASP's CSV injection
/// list) is prefixed with `'`, since chat titles, names and file names come from users.
pub(crate) fn cell(value: String) -> String {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value
    }
}

fn write_row<const N: usize>(
    w: &mut csv::Writer<Vec<u8>>,
    cells: [String; N],
) -> Result<(), Error> {
    w.write_record(cells.map(cell))
        .map_err(|e| Error::Invalid(format!("CSV: {e}")))
}

fn finish(w: csv::Writer<Vec<u8>>) -> Result<Vec<u8>, Error> {
    w.into_inner()
        .map_err(|e| Error::Invalid(format!("CSV: {e}")))
}

/// Writes `loadfile.csv`; returns its name.
pub(crate) fn write_loadfile(
    input: &ProductionInput,
    views: &[View<'_>],
    bates: &Bates,
    zone: &jiff::tz::TimeZone,
    out: &Path,
    tick: &mut dyn FnMut(u64),
) -> Result<String, Error> {
    let mut load = csv::Writer::from_writer(Vec::new());
    write_row(&mut load, LOADFILE_COLUMNS.map(String::from))?;
    for v in views {
        let r = v.record();
        let (begin, end) = bates
            .by_leaf
            .get(&v.item.leaf)
            .map(|(b, e)| {
                (
                    crate::bates_number(input, *b),
                    crate::bates_number(input, *e),
                )
            })
            .unwrap_or_default();
        let mut people = vec![v.sender.text().to_owned()];
        people.extend(v.recipients.iter().map(|p| p.text().to_owned()));
        let redactions = v.redactions();
        let (of, hash) = produced_hash(v);
        write_row(
            &mut load,
            [
                begin,
                end,
                v.item.leaf.to_string(),
                r.chat_id.clone(),
                v.chat_title
                    .as_ref()
                    .map(|t| t.text().to_owned())
                    .unwrap_or_default(),
                r.kind.as_str().to_owned(),
                v.sender.text().to_owned(),
                people.join("; "),
                crate::rfc3339(r.sent_at, zone),
                crate::rfc3339(r.received_at, zone),
                r.message_id.clone().unwrap_or_default(),
                if redactions.is_empty() { "no" } else { "yes" }.to_owned(),
                of.to_owned(),
                hash,
            ],
        )?;
        tick(1);
    }
    crate::write_file(out, LOADFILE, &finish(load)?)?;
    Ok(LOADFILE.into())
}

/// Writes `withholding_log.csv`; returns its name.
pub(crate) fn write_withholding_log(
    input: &ProductionInput,
    views: &[View<'_>],
    withheld: &Withheld,
    zone: &jiff::tz::TimeZone,
    out: &Path,
) -> Result<String, Error> {
    let mut log = csv::Writer::from_writer(Vec::new());
    write_row(&mut log, WITHHOLDING_COLUMNS.map(String::from))?;
    let mut entry = 0u64;
    let mut row = |log: &mut csv::Writer<Vec<u8>>, [a, b, c, d, e, f]: [String; 6]| {
        entry += 1;
        write_row(log, [entry.to_string(), a, b, c, d, e, f])
    };
    for item in &input.items {
        if let Treatment::Withhold { exemption } = &item.treatment {
            row(
                &mut log,
                [
                    item.leaf.to_string(),
                    "record".into(),
                    exemption.as_str().into(),
                    exemption.label().into(),
                    crate::rfc3339(item.record.received_at, zone),
                    format!(
                        "A {} record of chat {} withheld in full",
                        item.record.kind.as_str(),
                        item.record.chat_id
                    ),
                ],
            )?;
        }
    }
    for v in views {
        for (what, exemptions) in v.redactions() {
            let description = match what {
                "text" => "A portion of the record's text",
                "sender" => "The sender's name",
                "participant" => "A participant's name",
                "chat_title" => "The chat's title",
                "attachment_name" => "The attached file's name",
                _ => "Part of the record",
            };
            row(
                &mut log,
                [
                    v.item.leaf.to_string(),
                    what.into(),
                    exemptions
                        .iter()
                        .map(|e| e.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                    crate::view::label(&exemptions),
                    crate::rfc3339(v.record().received_at, zone),
                    description.into(),
                ],
            )?;
        }
    }
    // Each withheld name once more, with the placeholder that stands for it everywhere.
    for (exemption, placeholder) in withheld.users() {
        row(
            &mut log,
            [
                String::new(),
                "name".into(),
                exemption.as_str().into(),
                exemption.label().into(),
                String::new(),
                format!("A person's name, shown as {placeholder} throughout the production"),
            ],
        )?;
    }
    crate::write_file(out, WITHHOLDING_LOG, &finish(log)?)?;
    Ok(WITHHOLDING_LOG.into())
}
