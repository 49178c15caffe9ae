//! Messages: sending with timers, reading (which starts burn-on-read), delete for everyone,
//! and the shredder.

use reqwest::Method;
use vellum_mls::ChatPolicy;
use vellum_wire::*;

use crate::store::Shredded;
use crate::{now_millis, random_id, Client, Error, MessageExtra, MessageKind, MessageRow};

/// When a message expires: `expire_secs` after the earlier of the sender's clock and the
/// server's receipt, so that a sender's clock cannot stretch a message's life.
pub(crate) fn expiry(sent_at: i64, received_at: i64, expire_secs: Option<u64>) -> Option<i64> {
    expire_secs.map(|s| {
        sent_at
            .min(received_at)
            .saturating_add((s as i64).saturating_mul(1000))
    })
}

/// The burn time of a message first displayed at `read_at`: never after its expiry.
pub(crate) fn burn_time(
    read_at: i64,
    burn_secs: Option<u64>,
    expires_at: Option<i64>,
) -> Option<i64> {
    burn_secs.map(|b| {
        let burn = read_at.saturating_add((b as i64).saturating_mul(1000));
        expires_at.map_or(burn, |e| burn.min(e))
    })
}

/// The payload of a text message this device sent (first sent, or sent again).
pub(crate) fn text_payload(row: &MessageRow, expire_secs: Option<u64>) -> AppPayload {
    AppPayload::Text {
        id: row.id.clone(),
        text: row.text.clone(),
        sent_at: row.sent_at,
        expire_secs,
        burn_secs: row.burn_secs,
        salt: row.salt.map(hex::encode),
        reply_to: row.extra.reply_to.clone(),
        mentions: row.extra.mentions.clone(),
        attachments: row.extra.attachments.clone(),
    }
}

/// Per-message timer overrides; each may only shorten the chat's.
#[derive(Debug, Clone, Copy, Default)]
pub struct MessageTimers {
    pub expire_secs: Option<u64>,
    pub burn_secs: Option<u64>,
}

/// A text message to send (issue 10): its text, what it replies to, whom it mentions, its
/// files (uploaded already), and timers shorter than the chat's.
#[derive(Debug, Clone, Default)]
pub struct OutgoingMessage {
    pub text: String,
    pub reply_to: Option<String>,
    pub mentions: Vec<String>,
    pub attachments: Vec<AttachmentRef>,
    pub timers: MessageTimers,
}

impl Client {
    /// Sends a text message; returns it once the server has durably accepted it.
    pub async fn send(&mut self, chat: &str, text: &str) -> Result<MessageRow, Error> {
        self.send_with(chat, text, MessageTimers::default()).await
    }

    /// Sends with timers shorter than the chat's defaults.
    pub async fn send_with(
        &mut self,
        chat: &str,
        text: &str,
        overrides: MessageTimers,
    ) -> Result<MessageRow, Error> {
        let message = OutgoingMessage {
            text: text.to_owned(),
            timers: overrides,
            ..OutgoingMessage::default()
        };
        self.send_message(chat, message).await
    }

    /// Sends a text message with its reply, mentions and files; returns it once the server
    /// has durably accepted it.
    pub async fn send_message(
        &mut self,
        chat: &str,
        message: OutgoingMessage,
    ) -> Result<MessageRow, Error> {
        let _held = self.lock.hold()?;
        let OutgoingMessage {
            text,
            reply_to,
            mentions,
            attachments,
            timers: overrides,
        } = message;
        // A message of files alone may have no text.
        if text.is_empty() && attachments.is_empty() {
            return Err(Error::Invalid("message text is empty".into()));
        }
        if text.len() > MAX_TEXT_BYTES {
            return Err(Error::Invalid(format!(
                "message text is {} bytes; the limit is {MAX_TEXT_BYTES}",
                text.len()
            )));
        }
        let group_id = self.resolve_chat(chat)?;
        if self.store.chat(&group_id)?.is_some_and(|c| c.removed) {
            return Err(Error::RemovedFromChat);
        }
        if let Some(parent) = &reply_to {
            if !self
                .store
                .message(&group_id, parent)?
                .is_some_and(|m| m.kind == MessageKind::Text)
            {
                return Err(Error::Invalid(format!(
                    "no message {parent} in this chat to reply to"
                )));
            }
        }
        // A record chat whose archiver was replaced gets the bound one before anything more
        // is said in it.
        self.switch_archiver_if_needed(&group_id).await?;
        // Without a list, the `@name` words of the text that name members mention them.
        let mentions = match mentions.is_empty() {
            true => {
                let users: Vec<String> =
                    crate::chats::members(&self.load_group(&group_id)?, &self.identity)?
                        .into_iter()
                        .map(|m| m.user)
                        .collect();
                crate::rich::parse_mentions(&text, &users)
            }
            false => mentions,
        };
        let chat_policy = self.chat_policy(&group_id)?;
        let timers = chat_policy
            .message_timers(overrides.expire_secs, overrides.burn_secs)
            .map_err(|e| Error::Invalid(e.0))?;
        if overrides.expire_secs.is_some() || overrides.burn_secs.is_some() {
            // Overrides shorter than the chat's are within the org's bounds already; on a chat
            // without a timer they must be checked against the org's maximum here.
            let org = self.org_policy().await?;
            let relaxed = OrgPolicy {
                allow_no_expiry: true,
                ..org
            };
            ChatPolicy {
                expire_secs: timers.expire_secs,
                burn_secs: timers.burn_secs,
            }
            .check(&relaxed)
            .map_err(|e| Error::Invalid(e.0))?;
        }
        let now = now_millis();
        let expires_at = expiry(now, now, timers.expire_secs);
        // Salts the archive's commitments to this message, so this device can later prove
        // what it sent; kept with the message so that a resend commits the same way.
        let mut salt = [0u8; vellum_record::content::SALT_LEN];
        getrandom::fill(&mut salt)
            .map_err(|e| Error::Invalid(format!("operating system RNG: {e}")))?;
        let row = MessageRow {
            group_id: group_id.clone(),
            id: random_id(),
            kind: MessageKind::Text,
            sender_user: self.user.clone(),
            sender_device: self.device_id.clone(),
            sent_at: now,
            received_at: now,
            seq: None,
            text,
            expires_at,
            burn_secs: timers.burn_secs,
            // The sender has seen what it wrote: its own copy burns from now.
            read_at: Some(now),
            burn_at: burn_time(now, timers.burn_secs, expires_at),
            archived_leaf: None,
            salt: Some(salt),
            event: None,
            extra: MessageExtra {
                reply_to,
                mentions,
                attachments,
                edited_at: None,
            },
        };
        let payload = text_payload(&row, timers.expire_secs);
        // What members would refuse (too many mentions or files, a malformed file
        // reference) is refused here, before anything is stored.
        AppPayload::decode(&payload.encode()).map_err(|e| Error::Invalid(e.to_string()))?;
        let seq = self
            .send_payload(&group_id, payload, Some(&row), expires_at)
            .await?;
        Ok(MessageRow {
            seq: Some(seq),
            ..row
        })
    }

    /// Sends a payload of a kind this version does not interpret, as-is: what a newer client
    /// sends (an edit, a reaction, an attachment). For tests of forward compatibility and
    /// for tools; members running this version show it as [`crate::CANNOT_DISPLAY`].
    pub async fn send_unknown_kind(
        &mut self,
        chat: &str,
        payload: AppPayload,
    ) -> Result<u64, Error> {
        let _held = self.lock.hold()?;
        let AppPayload::Unknown { .. } = &payload else {
            return Err(Error::Invalid(
                "only a payload of a kind this version does not know is sent raw".into(),
            ));
        };
        let group_id = self.resolve_chat(chat)?;
        if self.store.chat(&group_id)?.is_some_and(|c| c.removed) {
            return Err(Error::RemovedFromChat);
        }
        self.send_payload(&group_id, payload, None, None).await
    }

    /// The chat's whole local history. Displaying it starts the burn-on-read timers of what
    /// had not been displayed yet.
    pub fn history(&self, chat: &str) -> Result<Vec<MessageRow>, Error> {
        let _held = self.lock.hold()?;
        let group_id = self.resolve_chat(chat)?;
        self.shred()?;
        self.store.mark_read(&group_id, now_millis())?;
        self.store.history(&group_id)
    }

    /// The chat's messages not displayed on this device before; starts their burn timers.
    pub fn read(&self, chat: &str) -> Result<Vec<MessageRow>, Error> {
        let _held = self.lock.hold()?;
        let group_id = self.resolve_chat(chat)?;
        self.shred()?;
        let unread = self.store.unread(&group_id)?;
        let now = now_millis();
        self.store.mark_read(&group_id, now)?;
        Ok(unread
            .into_iter()
            .map(|m| MessageRow {
                read_at: Some(now),
                burn_at: burn_time(now, m.burn_secs, m.expires_at),
                ..m
            })
            .collect())
    }

    /// A page of the chat's history (see [`LocalStore::history_page`]) for a window that
    /// says itself what it displayed: unlike [`Client::history`] it starts no burn timer
    /// (issue 12: a sealed message burns only once revealed).
    pub fn history_page(
        &self,
        chat: &str,
        before: Option<&crate::HistoryCursor>,
        limit: usize,
    ) -> Result<(Vec<MessageRow>, Option<crate::HistoryCursor>), Error> {
        let _held = self.lock.hold()?;
        let group_id = self.resolve_chat(chat)?;
        // Nothing due is shown, even between two shredder ticks.
        self.shred()?;
        self.store.history_page(&group_id, before, limit)
    }

    /// Displays one message on this device: a burn-on-read message's timer starts now.
    /// Returns it as it now is (`None` if it is gone).
    pub fn reveal(&self, chat: &str, message_id: &str) -> Result<Option<MessageRow>, Error> {
        let _held = self.lock.hold()?;
        let group_id = self.resolve_chat(chat)?;
        self.shred()?;
        self.store
            .mark_read_ids(&group_id, &[message_id.to_owned()], now_millis())?;
        self.store.message(&group_id, message_id)
    }

    /// A window displayed these messages: they are read on this device. A burn-on-read
    /// message from another member is left sealed (only [`Client::reveal`] opens it); the
    /// rest are returned, for read receipts.
    pub fn mark_displayed(&self, chat: &str, ids: &[String]) -> Result<Vec<MessageRow>, Error> {
        let _held = self.lock.hold()?;
        let group_id = self.resolve_chat(chat)?;
        let mut shown = Vec::new();
        for id in ids {
            if let Some(m) = self.store.message(&group_id, id)? {
                let sealed =
                    m.burn_secs.is_some() && m.read_at.is_none() && m.sender_user != self.user;
                if m.kind == MessageKind::Text && !sealed {
                    shown.push(m);
                }
            }
        }
        let unread: Vec<String> = shown
            .iter()
            .filter(|m| m.read_at.is_none())
            .map(|m| m.id.clone())
            .collect();
        if !unread.is_empty() {
            self.store.mark_read_ids(&group_id, &unread, now_millis())?;
        }
        Ok(shown)
    }

    /// Deletes one of this user's own messages from every member's device and the server.
    pub async fn delete(&mut self, chat: &str, message_id: &str) -> Result<(), Error> {
        let _held = self.lock.hold()?;
        let group_id = self.resolve_chat(chat)?;
        let message = self
            .store
            .message(&group_id, message_id)?
            .ok_or_else(|| Error::Invalid(format!("no message {message_id} in this chat")))?;
        if message.kind != MessageKind::Text || message.sender_user != self.user {
            return Err(Error::Invalid(
                "you can only delete your own messages".into(),
            ));
        }
        // Drop the ciphertext first, so that devices that have not fetched it never will.
        if let Some(seq) = message.seq {
            let path = format!("/v1/groups/{group_id}/messages/{seq}");
            match self.request::<()>(Method::DELETE, &path, None::<&()>).await {
                Ok(()) => {}
                // Already purged (expired): nothing left on the server to drop.
                Err(Error::Api { status: 404, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.delete_blobs(&message).await?;
        let payload = AppPayload::Delete {
            id: message_id.to_owned(),
        };
        let seq = self
            .send_payload(&group_id, payload, None, message.expires_at)
            .await?;
        self.store.shred(&group_id, message_id)?;
        self.store.truncate_wal()?;
        let deleted = crate::ChatEvent::MessageDeleted {
            by: self.user.clone(),
        };
        self.typed_event_row(&group_id, Some(seq), &self.user.clone(), deleted)?;
        Ok(())
    }

    /// Runs the shredder now: removes every message whose expiration or burn time has come.
    pub fn shred(&self) -> Result<Vec<Shredded>, Error> {
        let now = now_millis();
        let due = self.store.shred_due(now)?;
        // Saved copies of files of messages gone a moment ago are looked for again: a
        // browser may have finished writing one since (issue 12).
        self.store.sweep_saved_copies(now)?;
        Ok(due)
    }
}
