//! Issue 10, rich messages: edits, reactions, mentions, unread counts and local search.
//! Replies and files travel in a text message's [`crate::MessageExtra`].

use std::collections::HashMap;

use vellum_record::Record;
use vellum_wire::*;

use crate::{now_millis, random_id, ChatEvent, Client, Error, MessageKind, MessageRow};

/// The members who reacted to a message with one emoji, in the order they did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionCount {
    pub emoji: String,
    pub users: Vec<String>,
}

/// The reactions standing on a message, from its reaction rows in log order: a member has at
/// most one reaction per emoji, and a withdrawal takes it back. Emoji in order of first use.
pub fn fold_reactions(rows: &[MessageRow]) -> Vec<ReactionCount> {
    let mut out: Vec<ReactionCount> = Vec::new();
    for row in rows {
        let Some(ChatEvent::Reacted {
            by, emoji, remove, ..
        }) = &row.event
        else {
            continue;
        };
        let at = out.iter().position(|r| &r.emoji == emoji);
        match (at, remove) {
            (Some(i), true) => out[i].users.retain(|u| u != by),
            (Some(i), false) if !out[i].users.contains(by) => out[i].users.push(by.clone()),
            (Some(_), false) | (None, true) => {}
            (None, false) => out.push(ReactionCount {
                emoji: emoji.clone(),
                users: vec![by.clone()],
            }),
        }
    }
    out.retain(|r| !r.users.is_empty());
    out
}

/// The `@name` words of `text` that name one of `members`, once each, in order.
pub fn parse_mentions(text: &str, members: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in text.split(|c: char| c.is_whitespace()) {
        let Some(name) = word.strip_prefix('@') else {
            continue;
        };
        // "@bob," and "@bob." mention bob.
        let name = name.trim_end_matches(|c: char| c.is_ascii_punctuation() && c != '-');
        if members.iter().any(|m| m == name) && !out.iter().any(|o| o == name) {
            out.push(name.to_owned());
        }
    }
    out
}

/// Read receipts of one chat go out at most this often: a marker covers everything before
/// it, so displaying more within the interval waits for the next display.
pub const READ_RECEIPT_INTERVAL_MS: i64 = 5_000;

/// Whether every word occurs in `text`, ignoring case.
fn matches_all(text: &str, words: &[String]) -> bool {
    let text = text.to_lowercase();
    words.iter().all(|w| text.contains(&w.to_lowercase()))
}

impl Client {
    /// Replaces the text of one of this user's own messages for every member; the archive
    /// keeps every version. Returns the message with its new text.
    pub async fn edit(
        &mut self,
        chat: &str,
        message_id: &str,
        text: &str,
    ) -> Result<MessageRow, Error> {
        let _held = self.lock.hold()?;
        if text.trim().is_empty() {
            return Err(Error::Invalid("the new text is empty".into()));
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
        let target = self.own_text(&group_id, message_id, "edit")?;
        let now = now_millis();
        let mut salt = [0u8; vellum_record::content::SALT_LEN];
        getrandom::fill(&mut salt)
            .map_err(|e| Error::Invalid(format!("operating system RNG: {e}")))?;
        let id = random_id();
        let payload = AppPayload::Edit {
            id: id.clone(),
            target: message_id.to_owned(),
            text: text.to_owned(),
            sent_at: now,
            salt: Some(hex::encode(salt)),
        };
        let seq = self
            .send_payload(&group_id, payload, None, target.expires_at)
            .await?;
        // This device's own edit is not news to it: applied now, never shown by sync.
        let by = self.user.clone();
        let row = self.store_edit(
            &group_id,
            &id,
            seq,
            (&by, &self.device_id.clone()),
            &target,
            text,
            now,
        )?;
        if let Some(row) = row {
            self.store.mark_shown(&[row])?;
        }
        self.store
            .message(&group_id, message_id)?
            .ok_or_else(|| Error::Invalid(format!("message {message_id} expired meanwhile")))
    }

    /// Reacts to a message with one emoji, or withdraws that reaction.
    pub async fn react(
        &mut self,
        chat: &str,
        message_id: &str,
        emoji: &str,
        remove: bool,
    ) -> Result<(), Error> {
        let _held = self.lock.hold()?;
        let group_id = self.resolve_chat(chat)?;
        if self.store.chat(&group_id)?.is_some_and(|c| c.removed) {
            return Err(Error::RemovedFromChat);
        }
        let target = self
            .store
            .message(&group_id, message_id)?
            .filter(|m| m.kind == MessageKind::Text)
            .ok_or_else(|| Error::Invalid(format!("no message {message_id} in this chat")))?;
        let now = now_millis();
        let id = random_id();
        let payload = AppPayload::Reaction {
            id: id.clone(),
            target: message_id.to_owned(),
            emoji: emoji.to_owned(),
            remove,
            sent_at: now,
        };
        // What members would refuse (more than one emoji's bytes, spaces) is refused here.
        AppPayload::decode(&payload.encode()).map_err(|e| Error::Invalid(e.to_string()))?;
        let folded = fold_reactions(&self.store.about(&group_id, message_id)?);
        let mine = |r: &&ReactionCount| r.users.contains(&self.user);
        let standing = folded.iter().filter(mine).any(|r| r.emoji == emoji);
        if !remove && !standing && folded.iter().filter(mine).count() >= MAX_REACTIONS_PER_MEMBER {
            return Err(Error::Invalid(format!(
                "you already have {MAX_REACTIONS_PER_MEMBER} reactions on this message: withdraw one first"
            )));
        }
        if remove && !standing {
            return Err(Error::Invalid(format!(
                "you have not reacted {emoji} to message {message_id}"
            )));
        }
        if !remove && standing {
            return Ok(()); // one reaction per member per emoji: it stands already
        }
        let seq = self
            .send_payload(&group_id, payload, None, target.expires_at)
            .await?;
        let (by, device) = (self.user.clone(), self.device_id.clone());
        let reaction = ChatEvent::Reacted {
            by: by.clone(),
            target: message_id.to_owned(),
            emoji: emoji.to_owned(),
            remove,
        };
        if let Some(row) =
            self.store_reaction(&group_id, &id, seq, (&by, &device), &target, reaction, now)?
        {
            self.store.mark_shown(&[row])?;
        }
        Ok(())
    }

    /// Sends any payload as-is, without this client's checks: what a modified client could
    /// send. For tests of what receivers accept, and for tools.
    #[doc(hidden)]
    pub async fn send_raw(&mut self, chat: &str, payload: AppPayload) -> Result<u64, Error> {
        let _held = self.lock.hold()?;
        let group_id = self.resolve_chat(chat)?;
        self.send_payload(&group_id, payload, None, None).await
    }

    /// The reactions standing on a message.
    pub fn reactions(&self, group_id: &str, message_id: &str) -> Result<Vec<ReactionCount>, Error> {
        Ok(fold_reactions(&self.store.about(group_id, message_id)?))
    }

    /// Unread text messages per chat id. This user's own messages, sent from another of
    /// their devices, are not unread here.
    pub fn unread_counts(&self) -> Result<HashMap<String, u64>, Error> {
        let _held = self.lock.hold()?;
        self.shred()?;
        self.store.unread_counts(&self.user)
    }

    /// Text messages of this device's unexpired history (of one chat, or of all) containing
    /// every word, ignoring case: a scan in memory of what is decrypted anyway, so no index
    /// can outlive a shredded message. What it finds is displayed: burn timers start.
    pub fn search(&self, words: &[String], chat: Option<&str>) -> Result<Vec<MessageRow>, Error> {
        let _held = self.lock.hold()?;
        let words: Vec<String> = words
            .iter()
            .flat_map(|w| w.split_whitespace())
            .map(str::to_owned)
            .collect();
        if words.is_empty() {
            return Err(Error::Invalid("nothing to search for".into()));
        }
        self.shred()?;
        let chats = match chat {
            Some(chat) => vec![self.resolve_chat(chat)?],
            None => self
                .store
                .chats()?
                .into_iter()
                .map(|c| c.group_id)
                .collect(),
        };
        let mut found = Vec::new();
        let now = now_millis();
        for group_id in chats {
            let hits: Vec<MessageRow> = self
                .store
                .history(&group_id)?
                .into_iter()
                .filter(|m| m.kind == MessageKind::Text)
                .filter(|m| {
                    let names = m.extra.attachments.iter().map(|a| a.name.as_str());
                    let haystack: Vec<&str> =
                        std::iter::once(m.text.as_str()).chain(names).collect();
                    matches_all(&haystack.join("\n"), &words)
                })
                .collect();
            let ids: Vec<String> = hits.iter().map(|m| m.id.clone()).collect();
            self.store.mark_read_ids(&group_id, &ids, now)?;
            found.extend(hits);
        }
        found.sort_by_key(|m| (m.sent_at, m.seq));
        Ok(found)
    }

    /// After this device displayed a chat's messages (up to `seq`, or as far as it displayed
    /// any), tells the other members with one `read_up_to` marker: never for a position not
    /// past the last one sent, at most once per [`READ_RECEIPT_INTERVAL_MS`] per chat, and
    /// only where the chat's settings and the org's policy allow read receipts. True if sent.
    pub async fn send_read_receipt(&mut self, chat: &str, seq: Option<u64>) -> Result<bool, Error> {
        let _held = self.lock.hold()?;
        let group_id = self.resolve_chat(chat)?;
        if self.store.chat(&group_id)?.is_none_or(|c| c.removed) || self.sink.is_some() {
            return Ok(false);
        }
        let up_to = match seq {
            Some(seq) => Some(seq),
            None => self.store.displayed_up_to(&group_id, &self.user)?,
        };
        let Some(up_to) = up_to else {
            return Ok(false);
        };
        let now = now_millis();
        if let Some((sent, at)) = self.store.read_sent(&group_id)? {
            if up_to <= sent || now.saturating_sub(at) < READ_RECEIPT_INTERVAL_MS {
                return Ok(false);
            }
        }
        let group = self.load_group(&group_id)?;
        let settings = vellum_mls::ChatSettings::from_extensions(&group.context().extensions)?;
        let expire_secs =
            vellum_mls::ChatPolicy::from_extensions(&group.context().extensions)?.expire_secs;
        drop(group);
        if !settings.read_receipts || !self.org_policy().await?.allow_read_receipts {
            return Ok(false);
        }
        let payload = AppPayload::ReadUpTo {
            seq: up_to,
            sent_at: now,
        };
        // Purged by the server with the chat's messages: it says nothing once they are gone.
        let expires_at = crate::messages::expiry(now, now, expire_secs);
        self.send_payload(&group_id, payload, None, expires_at)
            .await?;
        self.store.set_read_sent(&group_id, up_to, now)?;
        Ok(true)
    }

    /// Read receipts for what a `watch` batch displayed: per chat, up to its newest text
    /// message from another user.
    pub async fn read_receipts_for(&mut self, shown: &[MessageRow]) -> Result<(), Error> {
        let mut newest: HashMap<String, u64> = HashMap::new();
        for m in shown {
            if let (MessageKind::Text, Some(seq)) = (m.kind, m.seq) {
                if m.sender_user != self.user {
                    let at = newest.entry(m.group_id.clone()).or_default();
                    *at = (*at).max(seq);
                }
            }
        }
        for (group_id, seq) in newest {
            self.send_read_receipt(&group_id, Some(seq)).await?;
        }
        Ok(())
    }

    /// Fetches the chat's delivery state (each member device's acknowledged position) from
    /// the server, for [`crate::LocalStore::receipt_counts`].
    pub async fn refresh_delivery(&mut self, chat: &str) -> Result<(), Error> {
        let _held = self.lock.hold()?;
        let group_id = self.resolve_chat(chat)?;
        let path = format!("/v1/groups/{group_id}/cursors");
        let cursors: GroupCursors = self
            .request(reqwest::Method::GET, &path, None::<&()>)
            .await?;
        self.store.set_delivery(&group_id, &cursors.cursors)
    }

    /// This user's own text message `id`, or why it cannot be `what`ed.
    fn own_text(&self, group_id: &str, id: &str, what: &str) -> Result<MessageRow, Error> {
        match self.store.message(group_id, id)? {
            Some(m) if m.kind == MessageKind::Text && m.sender_user == self.user => Ok(m),
            Some(_) => Err(Error::Invalid(format!(
                "you can only {what} your own messages"
            ))),
            None => Err(Error::Invalid(format!("no message {id} in this chat"))),
        }
    }

    /// A member's path for an edit record: the target takes the new text if its sender sent
    /// the edit; an edit of a message gone (deleted, expired) or of another's is dropped.
    pub(crate) fn apply_edit(&mut self, event: Record) -> Result<Option<MessageRow>, Error> {
        let group_id = event.chat_id.as_str();
        let target_id = event.target.clone().unwrap_or_default();
        let Some(target) = self
            .store
            .message(group_id, &target_id)?
            .filter(|m| m.kind == MessageKind::Text && m.sender_user == event.sender_user)
        else {
            tracing::info!(
                group = group_id,
                seq = event.seq,
                "dropping an edit of a message not here or not its sender's"
            );
            return Ok(None);
        };
        let id = event.message_id.clone().unwrap_or_else(random_id);
        self.store_edit(
            group_id,
            &id,
            event.seq,
            (&event.sender_user, &event.sender_device),
            &target,
            event.text.as_deref().unwrap_or_default(),
            event.sent_at,
        )
    }

    /// A member's path for a reaction record: kept if its target is here.
    pub(crate) fn apply_reaction(&mut self, event: Record) -> Result<Option<MessageRow>, Error> {
        let group_id = event.chat_id.as_str();
        let target_id = event.target.clone().unwrap_or_default();
        let Some(target) = self
            .store
            .message(group_id, &target_id)?
            .filter(|m| m.kind == MessageKind::Text)
        else {
            return Ok(None);
        };
        let reaction = ChatEvent::Reacted {
            by: event.sender_user.clone(),
            target: target_id,
            emoji: event.text.clone().unwrap_or_default(),
            remove: event.remove,
        };
        let id = event.message_id.clone().unwrap_or_else(random_id);
        self.store_reaction(
            group_id,
            &id,
            event.seq,
            (&event.sender_user, &event.sender_device),
            &target,
            reaction,
            event.sent_at,
        )
    }

    /// Re-seals the target's text and adds the edit's row (no text of its own: a device keeps
    /// only the newest version, in the message). Timers are the target's.
    #[allow(clippy::too_many_arguments)]
    fn store_edit(
        &self,
        group_id: &str,
        id: &str,
        seq: u64,
        (user, device): (&str, &str),
        target: &MessageRow,
        text: &str,
        sent_at: i64,
    ) -> Result<Option<MessageRow>, Error> {
        if !self
            .store
            .edit_message(group_id, &target.id, text, sent_at)?
        {
            return Ok(None);
        }
        let edited = ChatEvent::Edited {
            by: user.to_owned(),
            target: target.id.clone(),
        };
        let row = self.about_row(
            group_id,
            id,
            seq,
            (user, device),
            target,
            edited,
            sent_at,
            MessageKind::Edit,
        );
        Ok(self.store.add_message(&row)?.then_some(row))
    }

    /// Adds a reaction's row, in place of the same member's earlier one with the same emoji
    /// (so at most one per member per emoji per message stays).
    #[allow(clippy::too_many_arguments)]
    fn store_reaction(
        &self,
        group_id: &str,
        id: &str,
        seq: u64,
        (user, device): (&str, &str),
        target: &MessageRow,
        reaction: ChatEvent,
        sent_at: i64,
    ) -> Result<Option<MessageRow>, Error> {
        let ChatEvent::Reacted { emoji, .. } = &reaction else {
            return Ok(None);
        };
        let earlier: Vec<String> = self
            .store
            .about(group_id, &target.id)?
            .into_iter()
            .filter(|r| {
                matches!(&r.event, Some(ChatEvent::Reacted { by, emoji: e, .. }) if by == user && e == emoji)
            })
            .map(|r| r.id)
            .collect();
        // A member keeps at most MAX_REACTIONS_PER_MEMBER different reactions on a message:
        // more from a modified client are dropped, not shown.
        let adding = matches!(&reaction, ChatEvent::Reacted { remove: false, .. });
        if adding && earlier.is_empty() {
            let theirs = fold_reactions(&self.store.about(group_id, &target.id)?)
                .iter()
                .filter(|r| r.users.iter().any(|u| u == user))
                .count();
            if theirs >= MAX_REACTIONS_PER_MEMBER {
                return Ok(None);
            }
        }
        self.store.shred_ids(group_id, &earlier)?;
        let row = self.about_row(
            group_id,
            id,
            seq,
            (user, device),
            target,
            reaction,
            sent_at,
            MessageKind::Reaction,
        );
        Ok(self.store.add_message(&row)?.then_some(row))
    }

    /// The row of a reaction or edit: it expires and burns with its target.
    #[allow(clippy::too_many_arguments)]
    fn about_row(
        &self,
        group_id: &str,
        id: &str,
        seq: u64,
        (user, device): (&str, &str),
        target: &MessageRow,
        event: ChatEvent,
        sent_at: i64,
        kind: MessageKind,
    ) -> MessageRow {
        MessageRow {
            group_id: group_id.to_owned(),
            id: id.to_owned(),
            kind,
            sender_user: user.to_owned(),
            sender_device: device.to_owned(),
            sent_at,
            received_at: now_millis(),
            seq: Some(seq),
            text: event.text(),
            expires_at: target.expires_at,
            burn_secs: None,
            read_at: None,
            burn_at: target.burn_at,
            archived_leaf: None,
            salt: None,
            event: Some(event),
            extra: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reacted(by: &str, emoji: &str, remove: bool) -> MessageRow {
        let event = ChatEvent::Reacted {
            by: by.into(),
            target: "m".into(),
            emoji: emoji.into(),
            remove,
        };
        MessageRow {
            group_id: "g".into(),
            id: random_id(),
            kind: MessageKind::Reaction,
            sender_user: by.into(),
            sender_device: "d".into(),
            sent_at: 0,
            received_at: 0,
            seq: None,
            text: event.text(),
            expires_at: None,
            burn_secs: None,
            read_at: None,
            burn_at: None,
            archived_leaf: None,
            salt: None,
            event: Some(event),
            extra: Default::default(),
        }
    }

    #[test]
    fn issue_10_reactions_fold_one_per_member_per_emoji() {
        let rows = [
            reacted("alice", "👍", false),
            reacted("bob", "👍", false),
            reacted("alice", "👍", false),
            reacted("bob", "🎉", false),
            reacted("bob", "👍", true),
            reacted("carol", "🎉", true),
        ];
        assert_eq!(
            fold_reactions(&rows),
            vec![
                ReactionCount {
                    emoji: "👍".into(),
                    users: vec!["alice".into()]
                },
                ReactionCount {
                    emoji: "🎉".into(),
                    users: vec!["bob".into()]
                },
            ]
        );
        assert!(fold_reactions(&[reacted("a", "x", false), reacted("a", "x", true)]).is_empty());
    }

    #[test]
    fn issue_10_mentions_name_members_only() {
        let members = ["bob".to_string(), "carol-ann".to_string()];
        assert_eq!(
            parse_mentions(
                "@bob, ask @carol-ann. @mallory @bob again, mail@bob",
                &members
            ),
            vec!["bob", "carol-ann"]
        );
        assert!(parse_mentions("no one", &members).is_empty());
    }

    #[test]
    fn issue_10_search_needs_every_word_in_any_case() {
        let words = ["gate".to_string(), "NORTH".to_string()];
        assert!(matches_all("Crossing at 0600, north Gate.", &words));
        assert!(!matches_all("Crossing at the gate", &words));
    }
}
