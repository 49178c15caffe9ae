//! Issue 10, rich messages in the CLI: `edit`, `react`, `search`, and what a message shows
//! beyond its text (reply, reactions, edit, files; reaction and edit rows of sync/watch).

use std::io::Read;

use anyhow::{bail, Result};
use serde_json::{json, Value};
use vellum_client::{fold_reactions, ChatEvent, Client, LocalStore, MessageKind, MessageRow};
use vellum_wire::MAX_TEXT_BYTES;

use crate::output::{rfc3339_millis, Output};

/// A message's text from the command line, or with `-` from standard input (bounded: more
/// than the limit is refused, never cut).
pub fn text_arg(text: &str) -> Result<String> {
    if text != "-" {
        return Ok(text.to_owned());
    }
    let mut buf = Vec::new();
    std::io::stdin()
        .take(MAX_TEXT_BYTES as u64 + 1)
        .read_to_end(&mut buf)?;
    if buf.len() > MAX_TEXT_BYTES {
        bail!("standard input holds more than {MAX_TEXT_BYTES} bytes, the limit of a message");
    }
    let text = String::from_utf8(buf)?;
    // A trailing newline (echo, a heredoc) is not part of the message.
    Ok(text.strip_suffix('\n').unwrap_or(&text).to_owned())
}

/// The JSON fields of issue 10 on a message object: `reply_to`, `mentions`, `edited_at`,
/// `attachments` (never their keys), `reactions`; on a reaction or edit row, its `target`
/// (and `emoji` and `remove`, or the message's newest `text`).
pub fn extend_json(store: &LocalStore, m: &MessageRow, line: &mut Value) -> Result<()> {
    match (&m.kind, &m.event) {
        (MessageKind::Text, _) => {
            let reactions: Vec<Value> = fold_reactions(&store.about(&m.group_id, &m.id)?)
                .into_iter()
                .map(|r| json!({"emoji": r.emoji, "count": r.users.len(), "users": r.users}))
                .collect();
            let attachments: Vec<Value> = m
                .extra
                .attachments
                .iter()
                .map(
                    |a| json!({"name": a.name, "size": a.size, "sha256": a.sha256, "mime": a.mime}),
                )
                .collect();
            line["reply_to"] = json!(m.extra.reply_to);
            line["mentions"] = json!(m.extra.mentions);
            line["edited_at"] = json!(m.extra.edited_at.map(rfc3339_millis));
            line["attachments"] = json!(attachments);
            line["reactions"] = json!(reactions);
            if let Some(seq) = m.seq {
                let (delivered, read) = store.receipt_counts(&m.group_id, seq, &m.sender_user)?;
                line["receipts"] = json!({"delivered": delivered, "read": read});
            }
        }
        (
            MessageKind::Reaction,
            Some(ChatEvent::Reacted {
                target,
                emoji,
                remove,
                ..
            }),
        ) => {
            line["target"] = json!(target);
            line["emoji"] = json!(emoji);
            line["remove"] = json!(remove);
        }
        (MessageKind::Edit, Some(ChatEvent::Edited { target, .. })) => {
            // A device keeps only the newest text: an earlier edit carries none, and says so.
            let newest = store
                .message(&m.group_id, target)?
                .filter(|t| t.extra.edited_at == Some(m.sent_at));
            line["target"] = json!(target);
            line["superseded"] = json!(newest.is_none());
            line["text"] = json!(newest.as_ref().map(|t| t.text.clone()));
            line["edited_at"] = json!(rfc3339_millis(m.sent_at));
        }
        _ => {}
    }
    Ok(())
}

/// Before a chat is displayed: its delivery state from the server, when reachable (history
/// shows offline too, with what was last known).
pub async fn before_display(client: &mut Client, chat: &str) {
    if let Err(e) = client.refresh_delivery(chat).await {
        tracing::debug!(error = %e, "delivery state not refreshed");
    }
}

/// After a chat was displayed: a read receipt, where the chat and the org allow them. Not
/// fatal: what was displayed stays displayed, and the next display sends it.
pub async fn after_display(client: &mut Client, chat: &str) {
    if let Err(e) = client.send_read_receipt(chat, None).await {
        tracing::warn!(error = %e, "read receipt not sent");
    }
}

/// A line of at most `max` characters of `text`, on one line.
fn excerpt(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match flat.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &flat[..end]),
        None => flat,
    }
}

/// What a text message shows under its line: the message it replies to, that it was
/// edited, its files and its reactions.
pub fn detail_lines(store: &LocalStore, m: &MessageRow) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    if m.kind != MessageKind::Text {
        return Ok(lines);
    }
    if let Some(parent) = &m.extra.reply_to {
        lines.push(match store.message(&m.group_id, parent)? {
            Some(p) => format!("↪ reply to <{}> {}", p.sender_user, excerpt(&p.text, 60)),
            None => "↪ reply to (message no longer available)".to_owned(),
        });
    }
    if !m.extra.mentions.is_empty() {
        let names: Vec<String> = m.extra.mentions.iter().map(|u| format!("@{u}")).collect();
        lines.push(format!("mentions {}", names.join(" ")));
    }
    if let Some(at) = m.extra.edited_at {
        lines.push(format!("(edited {})", crate::output::time(at)));
    }
    for a in &m.extra.attachments {
        lines.push(format!(
            "[file] {} ({} bytes)",
            excerpt(&a.name, 80),
            a.size
        ));
    }
    let reactions = fold_reactions(&store.about(&m.group_id, &m.id)?);
    if !reactions.is_empty() {
        let shown: Vec<String> = reactions
            .iter()
            .map(|r| format!("{} {} ({})", r.emoji, r.users.len(), r.users.join(", ")))
            .collect();
        lines.push(format!("reactions: {}", shown.join("  ")));
    }
    Ok(lines)
}

/// The sentence of a reaction or edit row: what it is about, and an edit's newest text.
pub fn about_sentence(store: &LocalStore, m: &MessageRow) -> Result<String> {
    Ok(match &m.event {
        Some(ChatEvent::Edited { target, .. }) => match store.message(&m.group_id, target)? {
            // A device keeps only the newest text: an earlier edit says it was superseded
            // rather than show a text it did not carry.
            Some(t) if t.extra.edited_at == Some(m.sent_at) => {
                format!("{} ({target}): {}", m.text, excerpt(&t.text, 200))
            }
            Some(_) => format!("{} ({target}), since edited again", m.text),
            None => format!("{} ({target})", m.text),
        },
        Some(ChatEvent::Reacted { target, .. }) => format!("{} to {target}", m.text),
        _ => m.text.clone(),
    })
}

pub async fn edit(client: &mut Client, chat: &str, id: &str, text: &str, json: bool) -> Result<()> {
    let text = text_arg(text)?;
    client.catch_up().await?;
    let edited = client.edit(chat, id, &text).await?;
    match json {
        true => println!("{}", json!({"edited": edited.id, "chat": edited.group_id})),
        false => println!("edited {}", edited.id),
    }
    Ok(())
}

pub async fn react(
    client: &mut Client,
    chat: &str,
    id: &str,
    emoji: &str,
    remove: bool,
    json: bool,
) -> Result<()> {
    client.catch_up().await?;
    client.react(chat, id, emoji, remove).await?;
    let done = if remove { "withdrew" } else { "reacted" };
    match json {
        true => println!(
            "{}",
            json!({"target": id, "emoji": emoji, "remove": remove})
        ),
        false => println!(
            "{done} {} on {}",
            crate::output::safe(emoji),
            crate::output::safe(id)
        ),
    }
    Ok(())
}

/// `search`: the matching messages as `history` prints them (with `--json`, an array).
pub fn search(client: &Client, words: &[String], chat: Option<&str>, json: bool) -> Result<()> {
    let found = client.search(words, chat)?;
    if json {
        let store = client.store();
        let mut all = Vec::new();
        for m in &found {
            let title = store.chat(&m.group_id)?.and_then(|c| c.title);
            let line = crate::output::message_json(store, m, title.as_deref())?;
            all.push(line);
        }
        crate::output::json_array(all);
        return Ok(());
    }
    let out = Output::new(false);
    for m in &found {
        out.message(client.store(), m)?;
    }
    if found.is_empty() {
        eprintln!("no message matches");
    }
    Ok(())
}
