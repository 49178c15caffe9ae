//! Receiving: sync, joining by Welcome, processing each log entry exactly once, and the
//! WebSocket watch loop (which also runs the shredder).

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Method;
use vellum_mls::mls_rs::group::{CommitEffect, ReceivedMessage};
use vellum_mls::mls_rs::MlsMessage;
use vellum_mls::ChatPolicy;
use vellum_wire::*;

use crate::messages::expiry;
use crate::{now_millis, Client, Error, Group, MessageKind, MessageRow};

/// The shorter of two optional timers.
fn shorter(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// How often a running client looks for messages to shred: expiry lands within this.
pub const SHRED_TICK: Duration = Duration::from_millis(200);

impl Client {
    /// Fetches and processes everything pending, acknowledging only what is durably stored.
    /// Returns the new messages from others, oldest first.
    pub async fn sync(&mut self) -> Result<Vec<MessageRow>, Error> {
        let _held = self.lock.hold()?;
        let mut new_messages = Vec::new();
        let mut joined_any = false;
        loop {
            let batch: SyncResponse = self.call(Method::GET, "/v1/sync", None::<&()>).await?;
            let mut ack = AckRequest::default();
            for welcome in &batch.welcomes {
                self.join(welcome)?;
                joined_any = true;
                ack.welcomes.push(welcome.id);
            }
            let mut groups: HashMap<String, Group> = HashMap::new();
            for entries in &batch.groups {
                let mut last = None;
                for entry in &entries.entries {
                    if let Some(m) = self.process_entry(&entries.group_id, entry, &mut groups)? {
                        new_messages.push(m);
                    }
                    last = Some(entry.seq);
                }
                if let Some(seq) = last {
                    ack.cursors.push(GroupCursor {
                        group_id: entries.group_id.clone(),
                        seq,
                    });
                }
            }
            if !ack.welcomes.is_empty() || !ack.cursors.is_empty() {
                let _: () = self.post_with_retry("/v1/ack", &ack).await?;
            }
            if !batch.more {
                break;
            }
        }
        if joined_any {
            self.replenish_key_packages(false).await?;
        }
        self.shred()?;
        Ok(new_messages)
    }

    fn join(&mut self, welcome: &QueuedWelcome) -> Result<(), Error> {
        if self
            .store
            .chat(&welcome.group_id)?
            .is_some_and(|c| !c.removed)
        {
            return Ok(()); // joined before; the ack was lost
        }
        let message = MlsMessage::from_bytes(&welcome.welcome)?;
        let (mut group, _) = match self.mls.join_group(None, &message, None) {
            Ok(joined) => joined,
            Err(e) => {
                // An unusable Welcome cannot become usable later: report it and move on.
                tracing::warn!(group = %welcome.group_id, error = %e, "ignoring a Welcome this device cannot use");
                return Ok(());
            }
        };
        if vellum_mls::group_id_hex(group.group_id()) != welcome.group_id {
            tracing::warn!(group = %welcome.group_id, "ignoring a Welcome for a different group than announced");
            return Ok(());
        }
        let policy = ChatPolicy::from_extensions(&group.context().extensions)?;
        self.store.begin()?;
        let saved = group
            .write_to_storage()
            .map_err(Error::from)
            .and_then(|_| self.store.add_chat(&welcome.group_id, None, now_millis()))
            .and_then(|_| match policy == ChatPolicy::default() {
                true => Ok(()),
                false => self.record_event(
                    &welcome.group_id,
                    Some(0),
                    "",
                    &format!("This chat is set for {}", policy.describe()),
                ),
            });
        self.finish_tx(saved)
    }

    /// Processes one log entry in one local transaction (MLS state, history, cursor).
    fn process_entry(
        &mut self,
        group_id: &str,
        entry: &LogEntry,
        groups: &mut HashMap<String, Group>,
    ) -> Result<Option<MessageRow>, Error> {
        let Some(chat) = self.store.chat(group_id)? else {
            return Ok(None); // not joined (an unusable Welcome); nothing to do
        };
        if entry.seq <= chat.last_seq || chat.removed {
            return Ok(None);
        }
        if !groups.contains_key(group_id) {
            groups.insert(group_id.to_owned(), self.load_group(group_id)?);
        }
        let group = groups.get_mut(group_id).expect("inserted above");
        let own = entry.sender_device == self.device_id;
        let already_applied =
            entry.kind == EntryKind::Commit && entry.epoch < group.current_epoch();
        self.store.begin()?;
        let result = (|| -> Result<Option<MessageRow>, Error> {
            let mut shown = None;
            if !(already_applied || (own && entry.kind == EntryKind::Application)) {
                let policy_before = ChatPolicy::from_extensions(&group.context().extensions)?;
                let message = MlsMessage::from_bytes(&entry.payload);
                match message
                    .map_err(Error::from)
                    .and_then(|m| group.process_incoming_message(m).map_err(Error::from))
                {
                    Ok(ReceivedMessage::ApplicationMessage(app)) => {
                        let sender = group
                            .member_at_index(app.sender_index)
                            .map(|m| self.identity.certificate(&m.signing_identity))
                            .transpose()?;
                        match (AppPayload::decode(app.data()), sender) {
                            (
                                Ok(AppPayload::Text {
                                    id,
                                    text,
                                    sent_at,
                                    expire_secs,
                                    burn_secs,
                                }),
                                Some(sender),
                            ) => {
                                // A message may shorten its chat's timers, never lengthen them.
                                let chat =
                                    ChatPolicy::from_extensions(&group.context().extensions)?;
                                let expire_secs = shorter(expire_secs, chat.expire_secs);
                                let burn_secs = shorter(burn_secs, chat.burn_secs);
                                let expires_at = expiry(sent_at, entry.received_at, expire_secs);
                                if expires_at.is_some_and(|t| t <= now_millis()) {
                                    // Expired before it arrived: never shown, never stored.
                                } else {
                                    let row = MessageRow {
                                        group_id: group_id.to_owned(),
                                        id,
                                        kind: MessageKind::Text,
                                        sender_user: sender.user,
                                        sender_device: sender.device_id,
                                        sent_at,
                                        received_at: entry.received_at,
                                        seq: Some(entry.seq),
                                        text,
                                        expires_at,
                                        burn_secs,
                                        read_at: None,
                                        burn_at: None,
                                    };
                                    if self.store.add_message(&row)? {
                                        shown = Some(row);
                                    }
                                }
                            }
                            (Ok(AppPayload::Delete { id }), Some(sender)) => {
                                match self.store.message(group_id, &id)? {
                                    Some(original)
                                        if original.kind == MessageKind::Text
                                            && original.sender_user == sender.user =>
                                    {
                                        self.store.shred(group_id, &id)?;
                                        self.record_event(
                                            group_id,
                                            Some(entry.seq),
                                            &sender.user,
                                            &format!("{} deleted a message", sender.user),
                                        )?;
                                    }
                                    Some(_) => tracing::warn!(
                                        group = group_id,
                                        seq = entry.seq,
                                        "ignoring a delete of someone else's message"
                                    ),
                                    None => {} // never arrived here, or already gone
                                }
                            }
                            (Ok(AppPayload::ChatInfo { title }), Some(_)) => {
                                self.store.set_title(group_id, &title)?
                            }
                            (Err(e), _) => {
                                tracing::warn!(group = group_id, seq = entry.seq, error = %e, "dropping an undecodable message")
                            }
                            (_, None) => tracing::warn!(
                                group = group_id,
                                seq = entry.seq,
                                "dropping a message from an unknown leaf"
                            ),
                        }
                    }
                    Ok(ReceivedMessage::Commit(commit)) => {
                        if matches!(commit.effect, CommitEffect::Removed { .. }) {
                            self.store.set_removed(group_id)?;
                        } else {
                            let policy = ChatPolicy::from_extensions(&group.context().extensions)?;
                            let committer = group
                                .member_at_index(commit.committer)
                                .map(|m| self.identity.certificate(&m.signing_identity))
                                .transpose()?
                                .map(|c| c.user)
                                .unwrap_or_else(|| "someone".into());
                            self.record_policy_event(
                                group_id,
                                Some(entry.seq),
                                &committer,
                                policy,
                                policy_before,
                            )?;
                        }
                    }
                    Ok(_) => {}
                    // A member's malformed or undecryptable entry must not block the chat forever.
                    Err(e) => {
                        tracing::warn!(group = group_id, seq = entry.seq, error = %e, "skipping an entry this device cannot process")
                    }
                }
                group.write_to_storage()?;
            }
            self.store.set_last_seq(group_id, entry.seq)?;
            Ok(shown)
        })();
        if result.is_err() {
            groups.remove(group_id); // in-memory state may be ahead of the rolled-back store
        }
        self.finish_tx(result)
    }

    /// Opens the server's WebSocket and calls `on_messages` with each batch of new messages
    /// until the connection fails (the caller reconnects).
    pub async fn watch_once<F: FnMut(&[MessageRow])>(
        &mut self,
        on_messages: &mut F,
    ) -> Result<(), Error> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}/v1/ws", self.api.base().replacen("http", "ws", 1));
        let mut request = url
            .into_client_request()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        for (name, value) in self.signer().headers("GET", "/v1/ws", b"") {
            request.headers_mut().insert(
                name,
                value
                    .parse()
                    .map_err(|_| Error::Invalid("bad header".into()))?,
            );
        }
        let (mut socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| Error::Network(e.to_string()))?;
        let mut shredder = tokio::time::interval(SHRED_TICK);
        shredder.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let frame = tokio::select! {
                frame = socket.next() => frame,
                _ = shredder.tick() => {
                    let _held = self.lock.hold()?;
                    self.shred()?;
                    continue;
                }
            };
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| Error::Network(e.to_string()))?;
            if frame.is_text() {
                let batch = self.sync().await?;
                if !batch.is_empty() {
                    on_messages(&batch);
                }
            } else if frame.is_close() {
                break;
            }
        }
        Err(Error::Network("the server closed the connection".into()))
    }
}
