//! What the page is shown: chats and messages as JSON (the contract's `ChatSummary` and
//! `Message`). Built on the device thread from the profile; nothing here is kept.

use serde::Serialize;
use vellum_client::{Client, Error, MessageKind, MessageRow};

/// A chat in the chat list.
#[derive(Debug, Clone, Serialize)]
pub struct ChatSummary {
    pub id: String,
    pub title: String,
    /// `record` (archived for the org) or `transitory`.
    pub class: &'static str,
    pub unread: u64,
    pub last: Option<LastMessage>,
    pub expire_secs: Option<u64>,
    pub burn_secs: Option<u64>,
    pub held: bool,
    pub removed: bool,
    pub members: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastMessage {
    pub sender: String,
    /// The start of its text; `None` for a burn-on-read message (the list says "Tap to read").
    pub preview: Option<String>,
    pub at: i64,
    /// `text` or `event`.
    pub kind: &'static str,
}

/// One message or event of a conversation.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub id: String,
    pub chat: String,
    /// `text` or `event`.
    pub kind: &'static str,
    pub sender: String,
    pub sender_device: String,
    pub mine: bool,
    pub sent_at: i64,
    pub received_at: i64,
    /// `None` until the server accepted it.
    pub seq: Option<u64>,
    /// `None` while sealed behind "tap to read".
    pub text: Option<String>,
    pub sealed: bool,
    pub expires_at: Option<i64>,
    pub burn_secs: Option<u64>,
    pub burn_at: Option<i64>,
    pub reply_to: Option<ReplyQuote>,
    /// Empty while sealed (a mention is a word of the text).
    pub mentions: Vec<String>,
    /// Empty while sealed: a file's name says as much as the text.
    pub attachments: Vec<AttachmentView>,
    /// How many files the message carries, sealed or not ("Tap to read" can say "1 file").
    pub attachment_count: usize,
    pub edited_at: Option<i64>,
    pub reactions: Vec<ReactionView>,
    pub event: Option<EventView>,
    /// The archive returned a verified receipt for it.
    pub archived: bool,
    /// On the user's own messages the server accepted: how many other users have it on a
    /// device and how many said they read it (as `vellum history --json` shows them).
    pub receipts: Option<Receipts>,
}

/// An own message's delivery and read counts (other users; the archive is not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Receipts {
    pub delivered: u64,
    pub read: u64,
}

/// The receipts of one's own accepted text message; `None` for anything else.
pub fn receipts(client: &Client, row: &MessageRow) -> Result<Option<Receipts>, Error> {
    match (row.kind, row.seq) {
        (MessageKind::Text, Some(seq)) if row.sender_user == client.user() => {
            let (delivered, read) =
                client
                    .store()
                    .receipt_counts(&row.group_id, seq, &row.sender_user)?;
            Ok(Some(Receipts { delivered, read }))
        }
        _ => Ok(None),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplyQuote {
    pub id: String,
    pub sender: String,
    /// `None` if the quoted message is gone or sealed.
    pub text: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttachmentView {
    pub index: usize,
    pub name: String,
    pub size: u64,
    pub mime: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReactionView {
    pub emoji: String,
    pub count: usize,
    pub mine: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    /// The event's type (`member_added`, `timers_changed`, …; `notice` for old rows).
    pub kind: String,
    pub text: String,
}

/// A burn-on-read message another member sent that this device has not revealed: nothing
/// of its content (text, mentions, file names) is shown.
fn is_sealed(client: &Client, row: &MessageRow) -> bool {
    row.kind != MessageKind::Event
        && row.burn_secs.is_some()
        && row.read_at.is_none()
        && row.sender_user != client.user()
}

/// A message row as the page shows it.
pub fn message(client: &Client, row: &MessageRow) -> Result<Message, Error> {
    let mine = row.sender_user == client.user();
    let sealed = is_sealed(client, row);
    let reactions = if row.kind == MessageKind::Text {
        client
            .reactions(&row.group_id, &row.id)?
            .into_iter()
            .map(|r| ReactionView {
                mine: r.users.iter().any(|u| u == client.user()),
                count: r.users.len(),
                emoji: r.emoji,
            })
            .collect()
    } else {
        Vec::new()
    };
    // A sealed message says nothing of its content, and whom it answers is part of it.
    let reply_to = match &row.extra.reply_to {
        Some(id) if !sealed => Some(reply_quote(client, &row.group_id, id)?),
        _ => None,
    };
    let event = row.event.as_ref().map(|e| EventView {
        kind: event_kind(e),
        text: e.text(),
    });
    Ok(Message {
        id: row.id.clone(),
        chat: row.group_id.clone(),
        kind: match row.kind {
            MessageKind::Event => "event",
            _ => "text",
        },
        sender: row.sender_user.clone(),
        sender_device: row.sender_device.clone(),
        mine,
        sent_at: row.sent_at,
        received_at: row.received_at,
        seq: row.seq,
        text: (!sealed).then(|| row.text.clone()),
        sealed,
        expires_at: row.expires_at,
        burn_secs: row.burn_secs,
        burn_at: row.burn_at,
        reply_to,
        mentions: if sealed {
            Vec::new()
        } else {
            row.extra.mentions.clone()
        },
        attachments: if sealed { Vec::new() } else { attachments(row) },
        attachment_count: row.extra.attachments.len(),
        edited_at: row.extra.edited_at,
        reactions,
        event,
        archived: row.archived_leaf.is_some(),
        receipts: receipts(client, row)?,
    })
}

fn attachments(row: &MessageRow) -> Vec<AttachmentView> {
    row.extra
        .attachments
        .iter()
        .enumerate()
        .map(|(index, a)| AttachmentView {
            index,
            name: a.name.clone(),
            size: a.size,
            mime: a.mime.clone(),
        })
        .collect()
}

/// The quoted message's sender and start of text: no text (a quote carries no file names
/// either) while the quoted message is sealed on this device, or gone.
fn reply_quote(client: &Client, group_id: &str, id: &str) -> Result<ReplyQuote, Error> {
    Ok(match client.store().message(group_id, id)? {
        Some(quoted) => {
            let sealed = is_sealed(client, &quoted);
            ReplyQuote {
                id: id.to_owned(),
                text: (!sealed).then(|| quoted.text.chars().take(200).collect()),
                sender: quoted.sender_user,
            }
        }
        None => ReplyQuote {
            id: id.to_owned(),
            sender: String::new(),
            text: None,
        },
    })
}

/// The event's `type` tag as serde writes it.
fn event_kind(event: &vellum_client::ChatEvent) -> String {
    serde_json::to_value(event)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "notice".to_owned())
}

/// How long a chat list preview is, in characters.
pub const PREVIEW_CHARS: usize = 80;

/// The chat list's line for one chat. `unread` is the device's unread counts by chat
/// (one query for the whole list).
pub fn chat_summary(
    client: &Client,
    chat: &vellum_client::ChatRow,
    unread: &std::collections::HashMap<String, u64>,
) -> Result<ChatSummary, Error> {
    let id = &chat.group_id;
    // A chat this device was removed from has no group state left: no class, timers or
    // roster to read, only its history.
    let state = if chat.removed {
        None
    } else {
        group_facts(client, id)
            .inspect_err(|e| tracing::warn!(error = %e, "a chat's state could not be read"))
            .ok()
    };
    // One chat the device cannot read must not take the whole list away.
    let (class, policy, members) =
        state.unwrap_or(("transitory", vellum_mls::ChatPolicy::default(), 0));
    let last = client
        .store()
        .last_message(id)?
        .map(|m| last_message(client, &m));
    Ok(ChatSummary {
        id: id.clone(),
        title: chat
            .title
            .clone()
            .unwrap_or_else(|| id.chars().take(12).collect()),
        class,
        unread: unread.get(id).copied().unwrap_or(0),
        last,
        expire_secs: policy.expire_secs,
        burn_secs: policy.burn_secs,
        held: chat.held,
        removed: chat.removed,
        members,
    })
}

/// A chat's class, timers and number of members, from its MLS group.
fn group_facts(
    client: &Client,
    id: &str,
) -> Result<(&'static str, vellum_mls::ChatPolicy, usize), Error> {
    let class = client.chat_class(id)?.as_str();
    let mut users: Vec<String> = client.members(id)?.into_iter().map(|m| m.user).collect();
    users.sort();
    users.dedup();
    Ok((class, client.chat_policy(id)?, users.len()))
}

/// A chat's newest row as the list shows it: never the text of a sealed message.
fn last_message(client: &Client, row: &MessageRow) -> LastMessage {
    let sealed = is_sealed(client, row);
    let (kind, preview) = match (&row.kind, &row.event) {
        (MessageKind::Event, Some(event)) => ("event", Some(event.text())),
        (MessageKind::Event, None) => ("event", None),
        _ => (
            "text",
            (!sealed).then(|| row.text.chars().take(PREVIEW_CHARS).collect()),
        ),
    };
    LastMessage {
        sender: row.sender_user.clone(),
        preview,
        at: row.received_at.max(row.sent_at),
        kind,
    }
}

/// Every chat, latest activity first (a chat with no message yet last).
pub fn chat_list(client: &Client) -> Result<Vec<ChatSummary>, Error> {
    let unread = client.unread_counts()?;
    let mut chats = client
        .chats()?
        .iter()
        .map(|chat| chat_summary(client, chat, &unread))
        .collect::<Result<Vec<_>, _>>()?;
    chats.sort_by_key(|c| std::cmp::Reverse(c.last.as_ref().map_or(i64::MIN, |l| l.at)));
    Ok(chats)
}
