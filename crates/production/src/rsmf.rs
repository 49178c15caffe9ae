//! RSMF 2.0 (Relativity Short Message Format): an RFC 5322 message whose `rsmf.zip`
//! attachment holds `rsmf_manifest.json` (participants, one conversation per chat, events)
//! and the files the events name.
//!
//! Edits, deletions and reactions are carried the way RSMF expresses them when the message
//! they are about is produced: the message's `edits` (previous and new text), `deleted`, and
//! `reactions`; otherwise they stand as events of their own. Participants get opaque ids, so
//! that a withheld name is not kept in an id.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use base64::{engine::general_purpose::STANDARD, Engine};
use serde_json::{json, Map, Value};
use vellum_record::RecordKind;

use crate::view::View;
use crate::{Error, ProductionInput};

/// The name of the manifest inside `rsmf.zip`.
pub const RSMF_MANIFEST: &str = "rsmf_manifest.json";

/// The custom event property naming the leaves an event is made from.
pub const LEAVES_PROPERTY: &str = "vellum_leaves";

/// Builds the RSMF manifest and the attachment files it names.
pub(crate) fn manifest(
    views: &[View<'_>],
    zone: &jiff::tz::TimeZone,
) -> (Value, Vec<(String, Vec<u8>)>) {
    // Participants by first appearance, with opaque ids.
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    let mut participants = Vec::new();
    let mut person = |user: &str, shown: &crate::view::Shown| -> String {
        if let Some(id) = ids.get(user) {
            return id.clone();
        }
        let id = format!("p{}", ids.len() + 1);
        ids.insert(user.to_owned(), id.clone());
        let mut p = Map::new();
        p.insert("id".into(), json!(id));
        p.insert("display".into(), json!(shown.text()));
        if shown.exemption().is_none() {
            p.insert("account_id".into(), json!(user));
        }
        participants.push(Value::Object(p));
        id
    };
    let mut conversations: Vec<(String, Value)> = Vec::new();
    let mut chat_people: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut events: Vec<Map<String, Value>> = Vec::new();
    // Message id (per chat) to its event's position, for edits, deletions, reactions, files.
    let mut by_message: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut file_parts: BTreeMap<String, Vec<Option<Vec<u8>>>> = BTreeMap::new();

    for v in views {
        let r = v.record();
        let sender = person(&r.sender_user, &v.sender);
        let mut people = vec![sender.clone()];
        for (m, shown) in r.recipients.iter().zip(&v.recipients) {
            people.push(person(&m.user, shown));
        }
        let entry = chat_people.entry(r.chat_id.clone()).or_default();
        for p in people {
            if !entry.contains(&p) {
                entry.push(p);
            }
        }
        match conversations.iter_mut().find(|(id, _)| *id == r.chat_id) {
            Some((_, c)) => {
                if let Some(t) = &v.chat_title {
                    c["display"] = json!(t.text());
                }
            }
            None => {
                let mut c = json!({"id": r.chat_id, "platform": "vellum"});
                if let Some(t) = &v.chat_title {
                    c["display"] = json!(t.text());
                }
                conversations.push((r.chat_id.clone(), c));
            }
        }
        let leaf = v.item.leaf.to_string();
        let timestamp = crate::rfc3339(r.received_at, zone);
        let target = r
            .target
            .as_ref()
            .and_then(|t| by_message.get(&(r.chat_id.clone(), t.clone())).copied());
        let text = v.text_string();
        match (&r.kind, target) {
            (RecordKind::Edit, Some(at)) => {
                let event = &mut events[at];
                let previous = event
                    .get("body")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let edit = json!({
                    "participant": sender,
                    "timestamp": timestamp,
                    "previous": previous,
                    "new": text.clone().unwrap_or_default(),
                });
                push(event, "edits", edit);
                event.insert("body".into(), json!(text.unwrap_or_default()));
                add_leaf(event, &leaf);
                continue;
            }
            (RecordKind::Delete, _) => {
                let at = r
                    .message_id
                    .as_ref()
                    .and_then(|m| by_message.get(&(r.chat_id.clone(), m.clone())).copied());
                if let Some(at) = at {
                    events[at].insert("deleted".into(), json!(true));
                    add_leaf(&mut events[at], &leaf);
                    continue;
                }
            }
            (RecordKind::Reaction, Some(at)) => {
                let value = text.unwrap_or_default();
                react(&mut events[at], &value, &sender, r.remove);
                add_leaf(&mut events[at], &leaf);
                continue;
            }
            (RecordKind::Attachment(file), _) => {
                let parts = file_parts
                    .entry(file.blob.clone())
                    .or_insert_with(|| vec![None; file.parts.max(1) as usize]);
                if let (Some(slot), Ok(bytes)) = (
                    parts.get_mut(file.part as usize),
                    STANDARD.decode(&file.content),
                ) {
                    *slot = Some(bytes);
                }
                let owner = r
                    .message_id
                    .as_ref()
                    .and_then(|m| by_message.get(&(r.chat_id.clone(), m.clone())).copied());
                let attachment = json!({
                    "id": file.blob,
                    "display": v.attachment_name.as_ref().map(|n| n.text()).unwrap_or_default(),
                    "size": file.size,
                });
                if let Some(at) = owner {
                    let listed = events[at]
                        .get("attachments")
                        .and_then(Value::as_array)
                        .is_some_and(|a| a.iter().any(|x| x["id"] == json!(file.blob)));
                    if !listed {
                        push(&mut events[at], "attachments", attachment);
                    }
                    add_leaf(&mut events[at], &leaf);
                    continue;
                }
                let mut event = base_event(&leaf, &sender, &r.chat_id, &timestamp, "message");
                event.insert("attachments".into(), json!([attachment]));
                events.push(event);
                continue;
            }
            _ => {}
        }
        let (kind, body) = match &r.kind {
            RecordKind::Message => ("message", text.unwrap_or_default()),
            RecordKind::Edit => (
                "message",
                format!(
                    "(edit of message {}) {}",
                    r.target.as_deref().unwrap_or("?"),
                    text.unwrap_or_default()
                ),
            ),
            RecordKind::Reaction => (
                "unknown",
                format!(
                    "{} reaction {} to message {}",
                    if r.remove { "withdrew" } else { "added" },
                    text.unwrap_or_default(),
                    r.target.as_deref().unwrap_or("?")
                ),
            ),
            RecordKind::Delete => (
                "unknown",
                format!(
                    "deleted message {} for everyone",
                    r.message_id.as_deref().unwrap_or("?")
                ),
            ),
            RecordKind::Title => (
                "unknown",
                format!("chat title set to {}", text.unwrap_or_default()),
            ),
            RecordKind::Membership | RecordKind::Timers => ("unknown", text.unwrap_or_default()),
            RecordKind::Unknown { kind, .. } => (
                "unknown",
                format!("an event of kind {kind:?} this version of Vellum does not display"),
            ),
            RecordKind::Attachment(_) => unreachable!("handled above"),
        };
        let mut event = base_event(&leaf, &sender, &r.chat_id, &timestamp, kind);
        event.insert("body".into(), json!(body));
        if let Some(m) = &r.message_id {
            event.insert("id".into(), json!(format!("{}/{m}", r.chat_id)));
            if matches!(r.kind, RecordKind::Message) {
                by_message.insert((r.chat_id.clone(), m.clone()), events.len());
            }
        }
        if let Some(parent) = &r.reply_to {
            event.insert("parent".into(), json!(format!("{}/{parent}", r.chat_id)));
        }
        events.push(event);
    }
    // A reply's parent must be an event of the production.
    let ids_present: Vec<Value> = events.iter().filter_map(|e| e.get("id").cloned()).collect();
    for e in &mut events {
        if e.get("parent").is_some_and(|p| !ids_present.contains(p)) {
            e.remove("parent");
        }
    }
    for (blob, parts) in file_parts {
        if let Some(bytes) = parts.into_iter().collect::<Option<Vec<_>>>() {
            files.push((blob, bytes.concat()));
        }
    }
    // A file not all of whose parts were produced is not in rsmf.zip: listing it would
    // promise a file a reader cannot open (its records' events keep their leaves).
    for e in &mut events {
        if let Some(list) = e.get_mut("attachments").and_then(Value::as_array_mut) {
            list.retain(|a| files.iter().any(|(blob, _)| a["id"] == json!(blob)));
            if list.is_empty() {
                e.remove("attachments");
            }
        }
    }
    let conversations: Vec<Value> = conversations
        .into_iter()
        .map(|(id, mut c)| {
            let people = chat_people.remove(&id).unwrap_or_default();
            c["type"] = json!(if people.len() <= 2 {
                "direct"
            } else {
                "channel"
            });
            c["participants"] = json!(people);
            c
        })
        .collect();
    let manifest = json!({
        "version": "2.0.0",
        "participants": participants,
        "conversations": conversations,
        "events": events,
    });
    (manifest, files)
}

fn base_event(
    leaf: &str,
    participant: &str,
    conversation: &str,
    timestamp: &str,
    kind: &str,
) -> Map<String, Value> {
    let mut e = Map::new();
    e.insert("type".into(), json!(kind));
    e.insert("participant".into(), json!(participant));
    e.insert("conversation".into(), json!(conversation));
    e.insert("timestamp".into(), json!(timestamp));
    e.insert(
        "custom".into(),
        json!([{"name": LEAVES_PROPERTY, "value": leaf}]),
    );
    e
}

fn push(event: &mut Map<String, Value>, key: &str, value: Value) {
    match event.get_mut(key).and_then(Value::as_array_mut) {
        Some(list) => list.push(value),
        None => {
            event.insert(key.into(), json!([value]));
        }
    }
}

/// Adds a leaf to the event's `vellum_leaves` (comma-separated).
fn add_leaf(event: &mut Map<String, Value>, leaf: &str) {
    if let Some(custom) = event.get_mut("custom").and_then(Value::as_array_mut) {
        for c in custom {
            if c["name"] == LEAVES_PROPERTY {
                let joined = format!("{},{leaf}", c["value"].as_str().unwrap_or_default());
                c["value"] = json!(joined);
            }
        }
    }
}

fn react(event: &mut Map<String, Value>, value: &str, participant: &str, remove: bool) {
    if value.is_empty() {
        return;
    }
    let reactions = event
        .entry("reactions")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .expect("an array");
    let at = reactions.iter().position(|r| r["value"] == json!(value));
    let index = match at {
        Some(i) => i,
        None if remove => return,
        None => {
            reactions.push(json!({"value": value, "participants": []}));
            reactions.len() - 1
        }
    };
    let who = reactions[index]["participants"]
        .as_array_mut()
        .expect("an array");
    who.retain(|p| p != participant);
    if !remove {
        who.push(json!(participant));
    }
    let count = who.len();
    if count == 0 {
        reactions.remove(index);
    } else {
        reactions[index]["count"] = json!(count);
    }
    if reactions.is_empty() {
        event.remove("reactions");
    }
}

/// Writes `<case>.rsmf`; returns its name.
pub(crate) fn write(
    input: &ProductionInput,
    views: &[View<'_>],
    zone: &jiff::tz::TimeZone,
    out: &Path,
    tick: &mut dyn FnMut(u64),
) -> Result<String, Error> {
    let (manifest, files) = manifest(views, zone);
    tick(views.len() as u64);
    let events = manifest["events"].as_array().map_or(0, Vec::len);
    let zip = zip_container(&manifest, &files)?;
    let name = format!("{}.rsmf", crate::file_stem(&input.case_id));
    let first = views.iter().map(|v| v.record().received_at).min();
    let last = views.iter().map(|v| v.record().received_at).max();
    let mut mail = String::new();
    let header = |mail: &mut String, name: &str, value: &str| {
        mail.push_str(name);
        mail.push_str(": ");
        mail.push_str(value);
        mail.push_str("\r\n");
    };
    header(
        &mut mail,
        "From",
        "Vellum records office <records@vellum.invalid>",
    );
    header(&mut mail, "To", &encode_word(&input.requester));
    header(
        &mut mail,
        "Subject",
        &encode_word(&format!("Production for case {}", input.case_id)),
    );
    header(
        &mut mail,
        "Date",
        &crate::local(input.produced_at, zone)
            .strftime("%a, %d %b %Y %H:%M:%S %z")
            .to_string(),
    );
    header(&mut mail, "X-RSMF-Version", "2.0.0");
    header(&mut mail, "X-RSMF-Generator", "Vellum");
    header(&mut mail, "X-RSMF-EventCount", &events.to_string());
    if let (Some(first), Some(last)) = (first, last) {
        header(&mut mail, "X-RSMF-BeginDate", &crate::rfc3339(first, zone));
        header(&mut mail, "X-RSMF-EndDate", &crate::rfc3339(last, zone));
    }
    header(&mut mail, "MIME-Version", "1.0");
    let boundary = "vellum-rsmf-boundary";
    header(
        &mut mail,
        "Content-Type",
        &format!("multipart/mixed; boundary=\"{boundary}\""),
    );
    mail.push_str("\r\n");
    mail.push_str(&format!("--{boundary}\r\n"));
    mail.push_str("Content-Type: text/plain; charset=\"utf-8\"\r\n");
    mail.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
    let summary = format!(
        "Production for case {}\n{} records, {} events; conversations in rsmf.zip.\n",
        input.case_id,
        views.len(),
        events
    );
    mail.push_str(&wrap_base64(summary.as_bytes()));
    mail.push_str(&format!("--{boundary}\r\n"));
    mail.push_str("Content-Type: application/zip; name=\"rsmf.zip\"\r\n");
    mail.push_str("Content-Transfer-Encoding: base64\r\n");
    mail.push_str("Content-Disposition: attachment; filename=\"rsmf.zip\"\r\n\r\n");
    mail.push_str(&wrap_base64(&zip));
    mail.push_str(&format!("--{boundary}--\r\n"));
    crate::write_file(out, &name, mail.as_bytes())?;
    Ok(name)
}

fn zip_container(manifest: &Value, files: &[(String, Vec<u8>)]) -> Result<Vec<u8>, Error> {
    let bad = |e: zip::result::ZipError| Error::Invalid(format!("rsmf.zip: {e}"));
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file(RSMF_MANIFEST, options).map_err(bad)?;
    let json = serde_json::to_vec_pretty(manifest).expect("JSON serialises");
    zip.write_all(&json)
        .map_err(|e| Error::Io("rsmf.zip".into(), e))?;
    for (name, bytes) in files {
        zip.start_file(name.as_str(), options).map_err(bad)?;
        zip.write_all(bytes)
            .map_err(|e| Error::Io("rsmf.zip".into(), e))?;
    }
    Ok(zip.finish().map_err(bad)?.into_inner())
}

/// Base64 in lines of 76 characters (RFC 2045).
fn wrap_base64(bytes: &[u8]) -> String {
    let encoded = STANDARD.encode(bytes);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 38 + 2);
    for line in encoded.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push_str("\r\n");
    }
    out
}

/// A header value: plain printable ASCII as it is, anything else (and any line break, which
/// could inject headers) as an RFC 2047 encoded word.
fn encode_word(value: &str) -> String {
    if value.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) && !value.contains("=?") {
        value.to_owned()
    } else {
        format!("=?UTF-8?B?{}?=", STANDARD.encode(value.as_bytes()))
    }
}

/// The RSMF manifest inside an `.rsmf` file (for the verifier and tests).
pub fn read_manifest(rsmf: &[u8]) -> Result<Value, String> {
    let mut archive = read_zip(rsmf)?;
    let file = archive
        .by_name(RSMF_MANIFEST)
        .map_err(|e| format!("rsmf.zip: {e}"))?;
    serde_json::from_reader(file).map_err(|e| format!("{RSMF_MANIFEST}: {e}"))
}

/// The `rsmf.zip` attachment of an `.rsmf` file.
pub(crate) fn read_zip(rsmf: &[u8]) -> Result<zip::ZipArchive<std::io::Cursor<Vec<u8>>>, String> {
    let text = std::str::from_utf8(rsmf).map_err(|_| "the .rsmf is not UTF-8".to_owned())?;
    let start = text
        .find("filename=\"rsmf.zip\"")
        .ok_or("no rsmf.zip attachment")?;
    let body_at = text[start..].find("\r\n\r\n").ok_or("no rsmf.zip body")? + start + 4;
    let end = text[body_at..]
        .find("--")
        .ok_or("rsmf.zip is not terminated")?
        + body_at;
    let b64: String = text[body_at..end].split_whitespace().collect();
    let zip = STANDARD
        .decode(b64)
        .map_err(|e| format!("rsmf.zip is not base64: {e}"))?;
    zip::ZipArchive::new(std::io::Cursor::new(zip)).map_err(|e| format!("rsmf.zip: {e}"))
}
