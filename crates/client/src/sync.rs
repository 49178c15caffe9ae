//! Receiving: sync, joining by Welcome, processing each log entry exactly once, and the
//! WebSocket watch loop (which also runs the shredder).

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Method;
use vellum_mls::mls_rs::group::{CommitEffect, ReceivedMessage};
use vellum_mls::mls_rs::MlsMessage;
use vellum_mls::ChatPolicy;
use vellum_wire::*;

use vellum_record::{Record, RecordKind};

use crate::messages::expiry;
use crate::{
    now_millis, random_id, Client, Error, Group, Member, MessageExtra, MessageKind, MessageRow,
};

/// What a member sees in place of a payload this version cannot interpret.
pub const CANNOT_DISPLAY: &str = "a message this version cannot display";

/// The shorter of two optional timers.
fn shorter(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What one log entry did to this device.
enum Processed {
    Nothing,
    Shown(Box<MessageRow>),
    /// A commit's membership events (issue 9: nobody joins or leaves unseen).
    Events(Vec<MessageRow>),
    Shredded,
    /// Not processed: it adds a device of `records` this device does not know as the bound
    /// archiver. Processed again after a fresh look at the custodians' binding.
    Retry,
}

/// Set once this device has key packages on the server.
pub(crate) const KEY_PACKAGES_READY: &str = "key_packages_ready";

/// How often a running client looks for messages to shred: expiry lands within this.
pub const SHRED_TICK: Duration = Duration::from_millis(200);

impl Client {
    /// Fetches and processes everything pending, acknowledging only what is durably stored.
    /// Returns what no sync or watch has shown yet, oldest first: messages from others and
    /// every event, including those another command (a send, a chat change) processed.
    ///
    /// A command that does not print what this returns calls [`Client::catch_up`] instead,
    /// or what it fetched would never be shown (issue 10).
    pub async fn sync(&mut self) -> Result<Vec<MessageRow>, Error> {
        let processed = self.sync_quiet().await?;
        self.take_news(processed)
    }

    /// [`Client::sync`] that, when it fails part-way, still returns what it stored before
    /// the failure (marked shown), along with the error: a `sync` that stops on a lost
    /// connection prints what it got first (issue 10).
    pub async fn sync_partial(&mut self) -> (Vec<MessageRow>, Result<(), Error>) {
        match self.sync_quiet().await {
            Ok(processed) => match self.take_news(processed) {
                Ok(rows) => (rows, Ok(())),
                Err(e) => (Vec::new(), Err(e)),
            },
            Err(e) => (self.take_news(Vec::new()).unwrap_or_default(), Err(e)),
        }
    }

    /// Fetches and processes everything pending as a step of another command (a send, a
    /// chat change): nothing it finds counts as shown, so the next `sync` or `watch` shows
    /// it (issue 10: `send` used to swallow what it fetched).
    pub async fn catch_up(&mut self) -> Result<(), Error> {
        self.sync_quiet().await.map(|_| ())
    }

    /// What no sync or watch has shown yet, now marked shown: stored rows in the server's
    /// order across chats, then what is shown but not kept (account notices, log warnings).
    fn take_news(&mut self, processed: Vec<MessageRow>) -> Result<Vec<MessageRow>, Error> {
        let same = |a: &MessageRow, b: &MessageRow| a.group_id == b.group_id && a.id == b.id;
        let mut rows = self.store.unshown()?;
        // What this sync processed but no longer stores (a reaction withdrawn within the
        // same sync) is shown too, in its place.
        for m in self.take_directory_shown().into_iter().chain(processed) {
            if !rows.iter().any(|r| same(r, &m)) {
                rows.push(m);
            }
        }
        server_order(&mut rows);
        self.store.mark_shown(&rows)?;
        Ok(rows)
    }

    /// [`Client::sync`] as a step of another command: what it finds waits for the next sync.
    pub(crate) async fn sync_quiet(&mut self) -> Result<Vec<MessageRow>, Error> {
        let _held = self.lock.hold()?;
        // A waiting device takes its identity once approved; a holder makes sure it is
        // published (issue 9).
        self.settle_identity().await?;
        let mut new_messages = Vec::new();
        let mut joined_any = false;
        let mut shredded = false;
        self.trust_fresh = false;
        self.refresh_trust_if_due().await?;
        // A member monitors the archive's log (the archiver does not watch itself).
        let mut records = None;
        if self.sink.is_none() {
            let (bound, events) = self.follow_records_log().await?;
            records = bound;
            new_messages.extend(events);
        }
        let mut directory_checked = self.sink.is_some();
        loop {
            let batch: SyncResponse = self.request(Method::GET, "/v1/sync", None::<&()>).await?;
            // Before any entry: a commit's removals are explained from a current copy.
            if !directory_checked {
                directory_checked = true;
                if self.directory_due(batch.directory_size)? {
                    if let Err(e) = self.refresh_directory().await {
                        tracing::warn!(error = %e, "the key directory could not be refreshed");
                    }
                }
            }
            let mut ack = AckRequest::default();
            let mut retry = false;
            for welcome in &batch.welcomes {
                if self.join(welcome)? {
                    retry = true;
                    continue; // not acknowledged: it comes again after a fresh look
                }
                joined_any = true;
                ack.welcomes.push(welcome.id);
            }
            // After the joins (a chat joined now may be held) and before any entry: a message
            // arriving in a held chat is kept, expired or not.
            self.apply_holds(&batch.held_chats)?;
            // Until the custodians have bound an archiver, receipts stay queued: nothing can
            // check them yet.
            if let Some(records) = records.as_mut() {
                for receipt in &batch.receipts {
                    let events = self.apply_receipt(&receipt.receipt, records).await?;
                    new_messages.extend(events);
                    ack.receipts.push(receipt.id);
                }
            }
            let mut groups: HashMap<String, Group> = HashMap::new();
            for entries in &batch.groups {
                if let Some(warning) = self.check_log(entries)? {
                    new_messages.push(warning);
                }
                let mut last = None;
                for entry in &entries.entries {
                    self.entry_time = Some(entry.received_at);
                    let processed = self.process_entry(&entries.group_id, entry, &mut groups);
                    self.entry_time = None;
                    match processed? {
                        Processed::Shown(m) => new_messages.push(*m),
                        Processed::Events(rows) => new_messages.extend(rows),
                        Processed::Shredded => shredded = true,
                        Processed::Nothing => {}
                        Processed::Retry => {
                            retry = true;
                            break;
                        }
                    }
                    last = Some(entry.seq);
                }
                self.note_log_position(entries)?;
                if let Some(seq) = last {
                    ack.cursors.push(GroupCursor {
                        group_id: entries.group_id.clone(),
                        seq,
                    });
                }
            }
            if !ack.welcomes.is_empty() || !ack.cursors.is_empty() || !ack.receipts.is_empty() {
                let _: () = self.post_with_retry("/v1/ack", &ack).await?;
            }
            if retry {
                // Once per sync: against a fresh look the same entry is refused, not retried.
                self.refresh_trust().await?;
                continue;
            }
            if !batch.more {
                break;
            }
        }
        // After a join a key package was used; after a failed first upload none are on file.
        if joined_any || self.store.profile_get(KEY_PACKAGES_READY)?.is_none() {
            self.replenish_key_packages(false).await?;
        }
        // Before anything is sent again: devices the directory does not vouch for leave.
        self.rosters_to_check |= joined_any;
        Box::pin(self.remove_unvouched_everywhere()).await?;
        // Members who left are taken out before anything more is said (issue 10).
        Box::pin(self.commit_leaves()).await?;
        // Boxed: retrying a send may sync, which may retry sends (the `flushing` flag stops it).
        Box::pin(self.flush_outbox()).await?;
        if self.sink.is_some() {
            self.archive_files().await?;
        }
        if !self.shred()?.is_empty() || shredded {
            // Deletes shred inside their entry's transaction: empty the WAL once it is done.
            self.store.truncate_wal()?;
        }
        Ok(new_messages)
    }

    /// Sends again what this device sent but the server never confirmed. Each carries its
    /// message id as the idempotency key, so one the server did store is acknowledged, not
    /// stored twice.
    async fn flush_outbox(&mut self) -> Result<(), Error> {
        if self.flushing {
            return Ok(());
        }
        let unconfirmed = self.store.unconfirmed(&self.device_id)?;
        if unconfirmed.is_empty() {
            return Ok(());
        }
        self.flushing = true;
        let mut result = Ok(());
        for row in unconfirmed {
            // Not `?`: an error must still reset `flushing`, or the outbox would never be
            // sent again in this process.
            match self.store.chat(&row.group_id) {
                Ok(chat) if chat.as_ref().is_none_or(|c| c.removed) => continue,
                Ok(_) => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            let expire_secs = row
                .expires_at
                .map(|e| ((e - row.sent_at).max(0) / 1000) as u64);
            let payload = crate::messages::text_payload(&row, expire_secs);
            match self
                .send_payload(&row.group_id, payload, Some(&row), row.expires_at)
                .await
            {
                Ok(_) => {}
                // Still unreachable: leave the rest for the next sync.
                Err(Error::Network(_)) => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.flushing = false;
        result
    }

    /// Marks the chats a legal hold keeps (the server's whole list), with an event in each
    /// chat whose state changed: its shredder stops, and resumes on release.
    fn apply_holds(&self, held: &[String]) -> Result<(), Error> {
        for chat in self.store.chats()? {
            let now_held = held.contains(&chat.group_id);
            if chat.held == now_held || chat.removed {
                continue;
            }
            let record = self.chat_class(&chat.group_id)? == crate::ChatClass::Record;
            self.store.begin()?;
            let saved = self.store.set_held(&chat.group_id, now_held).and_then(|_| {
                self.record_event(
                    &chat.group_id,
                    Some(chat.last_seq),
                    "",
                    crate::chats::hold_notice(now_held, record),
                )
            });
            self.finish_tx(saved)?;
        }
        Ok(())
    }

    /// Joins the group of a Welcome. Whatever is wrong with a Welcome (someone else's
    /// bytes) is reported and skipped: it never stops this device from syncing. Returns
    /// true when it is to be retried after a fresh look at the records trust.
    fn join(&mut self, welcome: &QueuedWelcome) -> Result<bool, Error> {
        let skip = |why: &dyn std::fmt::Display| {
            tracing::warn!(group = %welcome.group_id, error = %why, "ignoring a Welcome this device cannot use");
            Ok(false)
        };
        let message = match MlsMessage::from_bytes(&welcome.welcome) {
            Ok(m) => m,
            Err(e) => return skip(&e),
        };
        if self
            .store
            .chat(&welcome.group_id)?
            .is_some_and(|c| !c.removed)
        {
            // Joined before and the ack was lost, unless this Welcome is for a later epoch:
            // removed and added again while this device was away.
            let local = self
                .load_group(&welcome.group_id)
                .map(|g| g.current_epoch())
                .ok();
            let offered = self
                .mls
                .examine_welcome_message(&message)
                .ok()
                .map(|info| info.group_context().epoch);
            if !matches!((local, offered), (Some(l), Some(w)) if w > l) {
                return Ok(false);
            }
        }
        let (mut group, _) = match self.mls.join_group(None, &message, None) {
            Ok(joined) => joined,
            Err(e) => return skip(&e),
        };
        if vellum_mls::group_id_hex(group.group_id()) != welcome.group_id {
            return skip(&"the Welcome is for another group than announced");
        }
        let policy = match ChatPolicy::from_extensions(&group.context().extensions) {
            Ok(p) => p,
            Err(e) => return skip(&e),
        };
        let named = match vellum_mls::RecordChat::archiver(&group.context().extensions) {
            Ok(archiver) => archiver,
            Err(e) => return skip(&e),
        };
        let record = named.is_some();
        // No device of `records` but the bound archiver (or the one this record chat names
        // already, which every member checked when it was added) may read along.
        if self.sink.is_none() {
            let roster: Vec<_> = vellum_mls::roster(&group, &self.identity)?
                .into_iter()
                .map(|(_, c)| c)
                .collect();
            if let Some(why) = self.stray_archiver(&roster, named.as_deref())? {
                if !self.trust_fresh {
                    return Ok(true);
                }
                tracing::error!(group = %welcome.group_id, %why, "REFUSED to join a chat with a device of records that is not the bound archiver");
                return Ok(false);
            }
        }
        self.store.begin()?;
        let saved = group
            .write_to_storage()
            .map_err(Error::from)
            .and_then(|_| self.store.add_chat(&welcome.group_id, None, now_millis()))
            .and_then(|_| {
                // The next sync shows it: a chat one was added to is news (issue 10).
                let row = self.event_row(
                    &welcome.group_id,
                    Some(0),
                    "",
                    crate::chats::class_notice(record),
                )?;
                self.store.mark_unshown(&row.group_id, &row.id)
            })
            .and_then(|_| match policy == ChatPolicy::default() {
                true => Ok(()),
                false => self.record_event(
                    &welcome.group_id,
                    Some(0),
                    "",
                    &format!("This chat is set for {}", policy.describe()),
                ),
            })
            .and_then(|_| match self.sink {
                // The archiver records who was in the chat when it joined.
                Some(_) => {
                    let members = crate::chats::members(&group, &self.identity).unwrap_or_default();
                    let names: Vec<String> = members
                        .iter()
                        .map(|m| format!("{} ({})", m.user, m.device_id))
                        .collect();
                    let now = now_millis();
                    self.emit(Record {
                        version: vellum_record::FORMAT_VERSION,
                        chat_id: welcome.group_id.clone(),
                        chat_title: None,
                        seq: 0,
                        kind: RecordKind::Membership,
                        message_id: None,
                        sender_user: self.user.clone(),
                        sender_device: self.device_id.clone(),
                        recipients: members,
                        sent_at: now,
                        received_at: now,
                        text: Some(format!("archiving began; members: {}", names.join(", "))),
                        expire_secs: policy.expire_secs,
                        burn_secs: policy.burn_secs,
                        log_hash: None,
                        salt: None,
                        reply_to: None,
                        mentions: Vec::new(),
                        target: None,
                        remove: false,
                    })
                }
                None => Ok(()),
            });
        self.finish_tx(saved).map(|_| false)
    }

    /// Processes one log entry in one local transaction (MLS state, history, cursor).
    /// Only local failures are errors: a member's malformed, undecryptable or misfiled entry
    /// is reported, skipped and never applied, so it cannot stop the chat.
    fn process_entry(
        &mut self,
        group_id: &str,
        entry: &LogEntry,
        groups: &mut HashMap<String, Group>,
    ) -> Result<Processed, Error> {
        let Some(chat) = self.store.chat(group_id)? else {
            return Ok(Processed::Nothing); // not joined (an unusable Welcome)
        };
        if entry.seq <= chat.last_seq || chat.removed {
            return Ok(Processed::Nothing);
        }
        if !groups.contains_key(group_id) {
            groups.insert(group_id.to_owned(), self.load_group(group_id)?);
        }
        let group = groups.get_mut(group_id).expect("inserted above");
        let own = entry.sender_device == self.device_id;
        let already_applied =
            entry.kind == EntryKind::Commit && entry.epoch < group.current_epoch();
        let mut discard_state = false;
        self.store.begin()?;
        let result = (|| -> Result<Processed, Error> {
            let mut processed = Processed::Nothing;
            if already_applied || (own && entry.kind == EntryKind::Application) {
                self.store.set_last_seq(group_id, entry.seq)?;
                return Ok(processed);
            }
            let skip = |why: &dyn std::fmt::Display| {
                tracing::warn!(group = group_id, seq = entry.seq, error = %why, "skipping an entry this device cannot process");
            };
            let policy_before =
                ChatPolicy::from_extensions(&group.context().extensions).unwrap_or_default();
            let record_before = is_record(group);
            // The archiver records who was in the chat when each event happened.
            let members_before = match self.sink {
                Some(_) => crate::chats::members(group, &self.identity).unwrap_or_default(),
                None => Vec::new(),
            };
            // A member checks who a commit adds: no device of `records` but the bound archiver.
            // It also shows who came and went.
            let roster_before = match (self.sink.is_none(), entry.kind) {
                (true, EntryKind::Commit) => {
                    vellum_mls::roster(group, &self.identity).unwrap_or_default()
                }
                _ => Vec::new(),
            };
            let extensions_before = group.context().extensions.clone();
            let received = MlsMessage::from_bytes(&entry.payload)
                .map_err(Error::from)
                .and_then(|m| group.process_incoming_message(m).map_err(Error::from));
            match (entry.kind, received) {
                (EntryKind::Application, Ok(ReceivedMessage::ApplicationMessage(app))) => {
                    let sender = group
                        .member_at_index(app.sender_index)
                        .and_then(|m| self.identity.certificate(&m.signing_identity).ok());
                    let chat_policy = ChatPolicy::from_extensions(&group.context().extensions)
                        .unwrap_or_default();
                    processed = match sender {
                        None => {
                            skip(&"a message from a leaf without a valid credential");
                            Processed::Nothing
                        }
                        Some(sender) => {
                            match self.payload_event(
                                group_id,
                                entry,
                                app.data(),
                                &sender,
                                &members_before,
                            )? {
                                None => Processed::Nothing,
                                Some((event, extra)) if self.sink.is_some() => {
                                    self.queue_archive_files(&event, &extra)?;
                                    self.archive_event(event)?
                                }
                                // A rename is taken from admins only (issue 10).
                                Some((
                                    Record {
                                        kind: RecordKind::Title,
                                        text: Some(title),
                                        ..
                                    },
                                    _,
                                )) => match self.receive_title(
                                    group_id,
                                    entry.seq,
                                    &sender.user,
                                    &title,
                                    group,
                                )? {
                                    Some(row) => Processed::Shown(Box::new(row)),
                                    None => Processed::Nothing,
                                },
                                Some((event, extra)) => {
                                    self.apply_event(event, extra, chat_policy)?
                                }
                            }
                        }
                    };
                    group.write_to_storage()?;
                }
                (EntryKind::Commit, Ok(ReceivedMessage::Commit(commit))) => {
                    self.rosters_to_check = true;
                    let stray = match (&commit.effect, self.sink.is_none()) {
                        (CommitEffect::Removed { .. }, _) | (_, false) => None,
                        _ => {
                            let added: Vec<_> = vellum_mls::roster(group, &self.identity)?
                                .into_iter()
                                .map(|(_, c)| c)
                                .filter(|c| {
                                    !roster_before
                                        .iter()
                                        .any(|(_, b)| b.device_id == c.device_id)
                                })
                                .collect();
                            self.stray_archiver(&added, None)?
                        }
                    };
                    if let Some(why) = stray {
                        if !self.trust_fresh {
                            return Ok(Processed::Retry);
                        }
                        // Refused: this device does not follow the chat into an epoch where
                        // that device reads along. It falls behind the chat, visibly.
                        let committer = group
                            .member_at_index(commit.committer)
                            .and_then(|m| self.identity.certificate(&m.signing_identity).ok())
                            .map(|c| c.user)
                            .unwrap_or_else(|| "someone".into());
                        tracing::error!(group = group_id, seq = entry.seq, %why, "REFUSED a commit adding a device of records that is not the bound archiver");
                        let row = self.event_row(
                            group_id,
                            Some(entry.seq),
                            "",
                            &format!("WARNING: {committer} added a device this device refuses: {why}. This device no longer follows this chat"),
                        )?;
                        discard_state = true;
                        self.store.set_last_seq(group_id, entry.seq)?;
                        return Ok(Processed::Shown(Box::new(row)));
                    }
                    if matches!(commit.effect, CommitEffect::Removed { .. }) {
                        self.store.set_removed(group_id)?;
                    } else {
                        let policy = ChatPolicy::from_extensions(&group.context().extensions)
                            .unwrap_or_default();
                        let committer = group
                            .member_at_index(commit.committer)
                            .and_then(|m| self.identity.certificate(&m.signing_identity).ok())
                            .map(|c| c.user)
                            .unwrap_or_else(|| "someone".into());
                        self.record_policy_event(
                            group_id,
                            Some(entry.seq),
                            &committer,
                            policy,
                            policy_before,
                        )?;
                        if !record_before && is_record(group) {
                            self.record_event(
                                group_id,
                                Some(entry.seq),
                                &committer,
                                &crate::chats::conversion_notice(&committer),
                            )?;
                        }
                        if self.sink.is_some() {
                            let after =
                                crate::chats::members(group, &self.identity).unwrap_or_default();
                            let committer_device = group
                                .member_at_index(commit.committer)
                                .and_then(|m| self.identity.certificate(&m.signing_identity).ok())
                                .map(|c| c.device_id)
                                .unwrap_or_default();
                            // Role changes are records too (issue 10): who named whom.
                            let settings = crate::roles::settings_events(
                                &committer,
                                &vellum_mls::ChatSettings::from_extensions(&extensions_before)
                                    .unwrap_or_else(|_| vellum_mls::ChatSettings::legacy()),
                                &vellum_mls::ChatSettings::from_extensions(
                                    &group.context().extensions,
                                )
                                .unwrap_or_else(|_| vellum_mls::ChatSettings::legacy()),
                            );
                            self.archive_commit(
                                group_id,
                                entry,
                                (&committer, &committer_device),
                                (&members_before, &after),
                                (policy_before, policy),
                                &settings,
                            )?;
                        }
                    }
                    if self.sink.is_none() {
                        let after = vellum_mls::roster(group, &self.identity).unwrap_or_default();
                        let mut events =
                            crate::events::commit_events(&roster_before, &after, &commit);
                        let removed = matches!(commit.effect, CommitEffect::Removed { .. });
                        if !removed {
                            self.explain_removals(&roster_before, &after, &mut events)?;
                        }
                        let mut rows =
                            self.record_membership_events(group_id, entry.seq, events)?;
                        if !removed {
                            rows.extend(self.roles_events(
                                group_id,
                                entry.seq,
                                &roster_before,
                                extensions_before,
                                &commit,
                                group,
                            )?);
                        }
                        processed = Processed::Events(rows);
                    }
                    group.write_to_storage()?;
                }
                (EntryKind::Proposal, Ok(ReceivedMessage::Proposal(proposal))) => {
                    if let Some(row) = self.receive_leave(group_id, entry.seq, group, &proposal)? {
                        processed = Processed::Shown(Box::new(row));
                    }
                    group.write_to_storage()?;
                }
                // A handshake message filed as an application message (or the reverse) would
                // move this device where the server and the other members are not.
                (kind, Ok(_)) => {
                    skip(&format!(
                        "a {kind:?} entry held another kind of MLS message"
                    ));
                    discard_state = true;
                }
                (_, Err(e)) => {
                    skip(&e);
                    discard_state = true;
                }
            }
            self.store.set_last_seq(group_id, entry.seq)?;
            Ok(processed)
        })();
        if result.is_err() || discard_state || matches!(result, Ok(Processed::Retry)) {
            // The in-memory group may be ahead of what was stored: reload it from the store.
            groups.remove(group_id);
        }
        if matches!(result, Ok(Processed::Retry)) {
            // Nothing of it is kept, not even its position: it is processed again.
            self.store.rollback();
            return result;
        }
        self.finish_tx(result)
    }

    pub(crate) fn emit(&mut self, event: Record) -> Result<(), Error> {
        let sink = self.sink.as_mut().expect("archiving only with a sink");
        sink.record(event)
            .map_err(|e| Error::Store(format!("archiving failed: {e}")))
    }

    fn event(
        &self,
        group_id: &str,
        entry: &LogEntry,
        kind: RecordKind,
        sender: (&str, &str),
        members: &[Member],
    ) -> Result<Record, Error> {
        Ok(Record {
            version: vellum_record::FORMAT_VERSION,
            chat_id: group_id.to_owned(),
            chat_title: self.store.chat(group_id)?.and_then(|c| c.title),
            seq: entry.seq,
            kind,
            message_id: None,
            sender_user: sender.0.to_owned(),
            sender_device: sender.1.to_owned(),
            recipients: members
                .iter()
                .filter(|m| m.device_id != sender.1)
                .cloned()
                .collect(),
            sent_at: entry.received_at,
            received_at: entry.received_at,
            text: None,
            expire_secs: None,
            burn_secs: None,
            // Only a well-formed hash names the entry (an older server sends none).
            log_hash: crate::rewind::parse_hash(entry.log_hash.as_deref()).map(hex::encode),
            salt: None,
            reply_to: None,
            mentions: Vec::new(),
            target: None,
            remove: false,
        })
    }

    /// The one interpretation of a decrypted application payload: the event it means, which
    /// the local history (`apply_event`) and the archive (`archive_event`) both consume.
    /// `None` (reported) for a payload that is not even an object with a kind. With it, what
    /// a text message carries beyond the record (issue 10: reply, mentions, files).
    fn payload_event(
        &self,
        group_id: &str,
        entry: &LogEntry,
        data: &[u8],
        sender: &vellum_mls::DeviceCertificate,
        members: &[Member],
    ) -> Result<Option<(Record, MessageExtra)>, Error> {
        let who = (sender.user.as_str(), sender.device_id.as_str());
        let base = |kind| self.event(group_id, entry, kind, who, members);
        let payload = match AppPayload::decode(data) {
            Ok(payload) => payload,
            Err(e) => {
                // Never dropped: a newer client may extend a known kind or its limits. It is
                // shown as a message this version cannot display and archived verbatim.
                tracing::warn!(group = group_id, seq = entry.seq, error = %e, "keeping an undecodable message as unknown");
                let (kind, payload) = undecodable(data);
                return Ok(Some((
                    base(RecordKind::Unknown { kind, payload })?,
                    MessageExtra::default(),
                )));
            }
        };
        let mut extra = MessageExtra::default();
        let record = match payload {
            AppPayload::Text {
                id,
                text,
                sent_at,
                expire_secs,
                burn_secs,
                salt,
                reply_to,
                mentions,
                attachments,
            } => {
                extra = MessageExtra {
                    reply_to: reply_to.clone(),
                    mentions: mentions.clone(),
                    attachments,
                    edited_at: None,
                };
                Record {
                    message_id: Some(id),
                    text: Some(text),
                    sent_at,
                    expire_secs,
                    burn_secs,
                    salt,
                    reply_to,
                    mentions,
                    ..base(RecordKind::Message)?
                }
            }
            AppPayload::Delete { id } => Record {
                message_id: Some(id),
                ..base(RecordKind::Delete)?
            },
            AppPayload::ChatInfo { title } => Record {
                text: Some(title),
                ..base(RecordKind::Title)?
            },
            AppPayload::Unknown { kind, raw } => base(RecordKind::Unknown { kind, payload: raw })?,
            AppPayload::Edit {
                id,
                target,
                text,
                sent_at,
                salt,
            } => Record {
                message_id: Some(id),
                target: Some(target),
                text: Some(text),
                sent_at,
                salt,
                ..base(RecordKind::Edit)?
            },
            AppPayload::Reaction {
                id,
                target,
                emoji,
                remove,
                sent_at,
            } => Record {
                message_id: Some(id),
                target: Some(target),
                text: Some(emoji),
                remove,
                sent_at,
                ..base(RecordKind::Reaction)?
            },
            // A read marker is delivery state, not a record: neither archived nor shown. Nobody
            // reads past the entry that says so.
            AppPayload::ReadUpTo { seq, .. } => {
                // A marker sent where the chat's settings forbid read receipts is ignored.
                let allowed = self.sink.is_none()
                    && self.load_group(group_id).is_ok_and(|g| {
                        vellum_mls::ChatSettings::from_extensions(&g.context().extensions)
                            .is_ok_and(|s| s.read_receipts)
                    });
                if allowed {
                    self.store
                        .note_read_marker(group_id, &sender.user, seq.min(entry.seq))?;
                }
                return Ok(None);
            }
        };
        Ok(Some((record, extra)))
    }

    /// The archiver's path: every event goes to the sink, expired or not, and nothing into
    /// the local history (but the title, which later records carry).
    fn archive_event(&mut self, event: Record) -> Result<Processed, Error> {
        if let (RecordKind::Title, Some(title)) = (&event.kind, &event.text) {
            self.store.set_title(&event.chat_id, title)?;
        }
        self.emit(event)?;
        Ok(Processed::Nothing)
    }

    fn archive_commit(
        &mut self,
        group_id: &str,
        entry: &LogEntry,
        committer: (&str, &str),
        (before, after): (&[Member], &[Member]),
        (policy_before, policy): (ChatPolicy, ChatPolicy),
        settings: &[crate::ChatEvent],
    ) -> Result<(), Error> {
        let name = |m: &Member| format!("{} ({})", m.user, m.device_id);
        let added: Vec<String> = after
            .iter()
            .filter(|m| !before.contains(m))
            .map(name)
            .collect();
        let removed: Vec<String> = before
            .iter()
            .filter(|m| !after.contains(m))
            .map(name)
            .collect();
        let mut parts = Vec::new();
        if !added.is_empty() {
            parts.push(format!("added {}", added.join(", ")));
        }
        if !removed.is_empty() {
            parts.push(format!("removed {}", removed.join(", ")));
        }
        let kind = if parts.is_empty() {
            RecordKind::Timers
        } else {
            RecordKind::Membership
        };
        if policy != policy_before {
            parts.push(format!("set {}", policy.describe()));
        }
        let mut text = if parts.is_empty() && settings.is_empty() {
            format!("{} updated its keys", committer.0)
        } else if parts.is_empty() {
            String::new()
        } else {
            format!("{} {}", committer.0, parts.join("; "))
        };
        for event in settings {
            if !text.is_empty() {
                text.push_str("; ");
            }
            text.push_str(&event.text());
        }
        let event = Record {
            text: Some(text),
            expire_secs: policy.expire_secs,
            burn_secs: policy.burn_secs,
            ..self.event(group_id, entry, kind, committer, after)?
        };
        self.emit(event)
    }

    /// A member's path: applies one payload's event to the local history.
    fn apply_event(
        &mut self,
        event: Record,
        extra: MessageExtra,
        chat: ChatPolicy,
    ) -> Result<Processed, Error> {
        let group_id = event.chat_id.as_str();
        let seq = event.seq;
        match event.kind {
            RecordKind::Message => {
                let id = event.message_id.unwrap_or_default();
                // A message may shorten its chat's timers, never lengthen them.
                let expire_secs = shorter(event.expire_secs, chat.expire_secs);
                let burn_secs = shorter(event.burn_secs, chat.burn_secs);
                let expires_at = expiry(event.sent_at, event.received_at, expire_secs);
                let held = self.store.chat(group_id)?.is_some_and(|c| c.held);
                if expires_at.is_some_and(|t| t <= now_millis()) && !held {
                    return Ok(Processed::Nothing); // expired before it arrived: never stored
                }
                if self
                    .store
                    .is_tombstoned(group_id, &id, &event.sender_user)?
                {
                    return Ok(Processed::Nothing); // its sender deleted it for everyone
                }
                // What this user sent from another of their devices is read here already
                // (never unread), and its copy burns as the sending device's does: from when
                // it was written.
                let read_at = (event.sender_user == self.user)
                    .then(|| event.sent_at.min(event.received_at).min(now_millis()));
                let row = MessageRow {
                    group_id: group_id.to_owned(),
                    id,
                    kind: MessageKind::Text,
                    sender_user: event.sender_user,
                    sender_device: event.sender_device,
                    sent_at: event.sent_at,
                    received_at: event.received_at,
                    seq: Some(seq),
                    text: event.text.unwrap_or_default(),
                    expires_at,
                    burn_secs,
                    read_at,
                    burn_at: read_at
                        .and_then(|at| crate::messages::burn_time(at, burn_secs, expires_at)),
                    archived_leaf: None,
                    salt: event
                        .salt
                        .as_deref()
                        .and_then(vellum_record::content::parse_salt),
                    event: None,
                    extra,
                };
                self.check_position(group_id, seq, &row.id, false)?;
                Ok(if self.store.add_message(&row)? {
                    Processed::Shown(Box::new(row))
                } else {
                    Processed::Nothing
                })
            }
            RecordKind::Delete => {
                let id = event.message_id.unwrap_or_default();
                let sender = event.sender_user;
                match self.store.message(group_id, &id)? {
                    Some(original)
                        if original.kind == MessageKind::Text && original.sender_user == sender =>
                    {
                        self.store.shred(group_id, &id)?;
                        self.deleted.push((group_id.to_owned(), id.clone()));
                        let deleted = crate::ChatEvent::MessageDeleted { by: sender.clone() };
                        self.typed_event_row(group_id, Some(seq), &sender, deleted)?;
                        Ok(Processed::Shredded)
                    }
                    Some(_) => {
                        tracing::warn!(
                            group = group_id,
                            seq,
                            "ignoring a delete of someone else's message"
                        );
                        Ok(Processed::Nothing)
                    }
                    None => {
                        // Never arrived here (or already gone): should a copy turn up later,
                        // say replayed by a member, it is not shown.
                        self.store.add_tombstone(group_id, &id, &sender)?;
                        Ok(Processed::Nothing)
                    }
                }
            }
            RecordKind::Title => {
                self.store
                    .set_title(group_id, event.text.as_deref().unwrap_or_default())?;
                Ok(Processed::Nothing)
            }
            RecordKind::Unknown { kind, .. } => {
                // Shown once, with its sender and time, so that nobody mistakes silence for
                // nothing said; its content stays with the archive (and newer clients).
                tracing::info!(group = group_id, seq, kind = %kind, "a payload kind this version cannot display");
                let text = format!("{} sent {CANNOT_DISPLAY}", event.sender_user);
                let row = MessageRow {
                    group_id: group_id.to_owned(),
                    id: random_id(),
                    kind: MessageKind::Event,
                    text: text.clone(),
                    sender_user: event.sender_user,
                    sender_device: event.sender_device,
                    sent_at: event.sent_at,
                    received_at: event.received_at,
                    seq: Some(seq),
                    // Its own timers are unknown; the chat's still bound it.
                    expires_at: expiry(event.received_at, event.received_at, chat.expire_secs),
                    burn_secs: None,
                    read_at: None,
                    burn_at: None,
                    archived_leaf: None,
                    salt: None,
                    event: Some(crate::ChatEvent::Notice { text }),
                    extra: MessageExtra::default(),
                };
                self.store.add_message(&row)?;
                Ok(Processed::Shown(Box::new(row)))
            }
            RecordKind::Edit => Ok(match self.apply_edit(event)? {
                Some(row) => Processed::Shown(Box::new(row)),
                None => Processed::Nothing,
            }),
            RecordKind::Reaction => Ok(match self.apply_reaction(event)? {
                Some(row) => Processed::Shown(Box::new(row)),
                None => Processed::Nothing,
            }),
            // Payloads never mean these: they come from commits.
            RecordKind::Membership | RecordKind::Timers | RecordKind::Attachment(_) => {
                Ok(Processed::Nothing)
            }
        }
    }

    /// The signed request that opens the server's wake-up WebSocket (`/v1/ws`): a process
    /// that keeps the socket on another runtime than the device's (the window, issue 12)
    /// connects with it and runs [`Client::sync`] on each text frame. Its signature is
    /// timestamped: build a fresh one for each connection.
    pub fn wakeup_request(
        &self,
    ) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request, Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}/v1/ws", self.api.base().replacen("http", "ws", 1));
        let mut request = url
            .into_client_request()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let timestamp = self.api.timestamp();
        for (name, value) in self.signer().headers_at("GET", "/v1/ws", b"", timestamp) {
            request.headers_mut().insert(
                name,
                value
                    .parse()
                    .map_err(|_| Error::Invalid("bad header".into()))?,
            );
        }
        Ok(request)
    }

    /// The wake-up socket of `server` (a node's URL, [`Client::server`] when the request was
    /// built) could not be opened: the next request goes to the node after it (issue 13).
    pub fn server_unreachable(&self, server: &str) {
        self.api.failed(server);
    }

    /// Messages other members deleted for everyone that syncs since the last call shredded
    /// here, as (chat, message id): the window takes them off the screen (issue 12).
    pub fn take_deleted(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.deleted)
    }

    /// Opens the server's WebSocket and calls `on_messages` with each batch of new messages
    /// until the connection fails (the caller reconnects).
    pub async fn watch_once<F: FnMut(&[MessageRow])>(
        &mut self,
        on_messages: &mut F,
    ) -> Result<(), Error> {
        self.watch_once_from(&mut |_: &str| {}, on_messages).await
    }

    /// [`Client::watch_once`], calling `on_open` with the node's URL once its socket is open
    /// (issue 13: `vellum watch` says which node it watches after a failover).
    pub async fn watch_once_from<O: FnMut(&str), F: FnMut(&[MessageRow])>(
        &mut self,
        on_open: &mut O,
        on_messages: &mut F,
    ) -> Result<(), Error> {
        use futures_util::StreamExt;
        let server = self.server().to_owned();
        let request = self.wakeup_request()?;
        let timeouts = self.api.timeouts();
        // A hung node accepts the connection and never answers the upgrade.
        let opened =
            tokio::time::timeout(timeouts.request, tokio_tungstenite::connect_async(request))
                .await
                .unwrap_or(Err(tokio_tungstenite::tungstenite::Error::Io(
                    std::io::ErrorKind::TimedOut.into(),
                )));
        let (mut socket, _) = match opened {
            Ok(connected) => connected,
            // A revoked device is refused here too, and judged as on any request.
            Err(tokio_tungstenite::tungstenite::Error::Http(response))
                if crate::devices::is_revoked_answer(
                    response.status().as_u16(),
                    response.body().as_deref(),
                ) =>
            {
                return Err(self
                    .revoked_answer(Error::Api {
                        status: 403,
                        code: codes::DEVICE_REVOKED.into(),
                        message: "this device was revoked".into(),
                    })
                    .await)
            }
            Err(e) => {
                // A node that answered (any HTTP status) is up; one that did not is left.
                if !matches!(e, tokio_tungstenite::tungstenite::Error::Http(_)) {
                    self.server_unreachable(&server);
                }
                return Err(Error::Network(format!("{server}: {e}")));
            }
        };
        on_open(&server);
        let mut shredder = tokio::time::interval(SHRED_TICK);
        shredder.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut liveness = Liveness::new(timeouts);
        loop {
            let frame = tokio::select! {
                frame = socket.next() => frame,
                _ = shredder.tick() => {
                    let _held = self.lock.hold()?;
                    self.shred()?;
                    continue;
                }
                _ = liveness.pinger.tick() => {
                    if let Err(e) = liveness.ping(&mut socket).await {
                        // Hung, not closed: the next connection goes to the next node.
                        self.server_unreachable(&server);
                        return Err(Error::Network(format!("{server}: {e}")));
                    }
                    continue;
                }
            };
            liveness.heard();
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| Error::Network(format!("{server}: {e}")))?;
            if frame.is_text() {
                // Wake-ups that queued up while the last sync ran are all answered by the
                // next one: one sync, not one per frame.
                let mut closed = false;
                while let Some(queued) = futures_util::FutureExt::now_or_never(socket.next()) {
                    match queued {
                        Some(Ok(f)) if f.is_close() => closed = true,
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(Error::Network(format!("{server}: {e}"))),
                        None => closed = true,
                    }
                    if closed {
                        break;
                    }
                }
                let batch = self.sync().await?;
                if !batch.is_empty() {
                    on_messages(&batch);
                    self.read_receipts_for(&batch).await?;
                }
                // A long catch-up is time the socket was not read, not silence of the node.
                liveness.heard();
                if closed {
                    break;
                }
            } else if frame.is_close() {
                break;
            }
        }
        Err(Error::Network(format!("{server} closed the connection")))
    }
}

/// Whether the node at the other end of a wake-up socket still answers: the client pings it
/// every [`Timeouts::ws_ping_every`] (a live node's WebSocket layer answers with a pong)
/// and gives it up after [`Timeouts::ws_silent_for`] without any frame.
struct Liveness {
    pinger: tokio::time::Interval,
    last_heard: tokio::time::Instant,
    silent_for: Duration,
}

impl Liveness {
    fn new(timeouts: crate::Timeouts) -> Self {
        let start = tokio::time::Instant::now() + timeouts.ws_ping_every;
        let mut pinger = tokio::time::interval_at(start, timeouts.ws_ping_every);
        pinger.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            pinger,
            last_heard: tokio::time::Instant::now(),
            silent_for: timeouts.ws_silent_for,
        }
    }

    fn heard(&mut self) {
        self.last_heard = tokio::time::Instant::now();
    }

    /// Pings, unless the node has been silent too long: then the reason it counts as dead.
    async fn ping<S>(&mut self, socket: &mut S) -> Result<(), String>
    where
        S: futures_util::Sink<tokio_tungstenite::tungstenite::Message> + Unpin,
        S::Error: std::fmt::Display,
    {
        use futures_util::SinkExt;
        let silent = self.last_heard.elapsed();
        if silent >= self.silent_for {
            return Err(format!(
                "no answer on the WebSocket for {} s",
                silent.as_secs()
            ));
        }
        // A send can block on a hung peer's full buffer: bounded by the silence allowed.
        let ping = tokio_tungstenite::tungstenite::Message::Ping(Vec::new().into());
        match tokio::time::timeout(self.silent_for - silent, socket.send(ping)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the WebSocket takes no more data".into()),
        }
    }
}

/// Puts rows stored chat after chat (one chat's entries are processed before the next
/// chat's) back in the server's order across chats, keeping each chat's own order: each row
/// sorts by the earliest server time of itself and what follows it in its chat, so a notice
/// stamped when it was processed (joining a chat) still comes before that chat's messages.
fn server_order(rows: &mut Vec<MessageRow>) {
    // A chat's own order is its log's: a row rewritten after it was first stored (a
    // reaction withdrawn, say) must not move behind later entries.
    rows.sort_by(|a, b| (&a.group_id, a.seq).cmp(&(&b.group_id, b.seq)));
    order_by_server_time(rows, |m| (m.group_id.as_str(), m.received_at));
}

/// [`server_order`] over anything that has a chat and a server time.
fn order_by_server_time<T>(rows: &mut Vec<T>, chat_and_time: impl Fn(&T) -> (&str, i64)) {
    let mut keys = vec![0; rows.len()];
    let mut earliest: HashMap<&str, i64> = HashMap::new();
    for (i, row) in rows.iter().enumerate().rev() {
        let (chat, at) = chat_and_time(row);
        let key = earliest.get(chat).map_or(at, |&later| later.min(at));
        earliest.insert(chat, key);
        keys[i] = key;
    }
    let mut keyed: Vec<(i64, T)> = keys.into_iter().zip(rows.drain(..)).collect();
    // Stable: ties keep the order they were stored in.
    keyed.sort_by_key(|(key, _)| *key);
    rows.extend(keyed.into_iter().map(|(_, row)| row));
}

/// Whether the group's context makes it a record chat (an undecodable extension does not).
fn is_record(group: &Group) -> bool {
    vellum_mls::RecordChat::archiver(&group.context().extensions).is_ok_and(|a| a.is_some())
}

/// An undecodable payload as an unknown record: its own `kind` when it is JSON that names
/// one, else `undecodable`; the text verbatim, or `base64:`-prefixed bytes when not UTF-8.
fn undecodable(data: &[u8]) -> (String, String) {
    match std::str::from_utf8(data) {
        Ok(text) => {
            let kind = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| v.get("kind")?.as_str().map(str::to_owned))
                .unwrap_or_else(|| "undecodable".to_owned());
            (kind, text.to_owned())
        }
        Err(_) => {
            use base64::Engine;
            let encoded = base64::engine::general_purpose::STANDARD.encode(data);
            ("undecodable".to_owned(), format!("base64:{encoded}"))
        }
    }
}

#[cfg(test)]
mod order_tests {
    use super::*;

    /// Issue 10: `sync` was not ordered across chats.
    #[test]
    fn issue_10_rows_are_put_in_server_order_across_chats_keeping_each_chats_order() {
        let mut rows = vec![
            ("a", "a1", 10),
            ("a", "a3", 30),
            // Joined during this sync: its notice is stamped later than its first message.
            ("b", "joined b", 99),
            ("b", "b2", 20),
            ("b", "b4", 40),
            ("c", "c-tie", 30),
        ];
        order_by_server_time(&mut rows, |&(chat, _, at)| (chat, at));
        let order: Vec<&str> = rows.iter().map(|&(_, text, _)| text).collect();
        assert_eq!(order, ["a1", "joined b", "b2", "a3", "c-tie", "b4"]);
    }
}

#[cfg(test)]
mod undecodable_tests {
    use super::undecodable;

    #[test]
    fn issue_7_undecodable_payloads_are_kept_verbatim() {
        let malformed_text = br#"{"kind":"text","id":"m","text":{"rich":true},"sent_at":1}"#;
        assert_eq!(
            undecodable(malformed_text),
            (
                "text".to_owned(),
                String::from_utf8(malformed_text.to_vec()).unwrap()
            )
        );
        assert_eq!(
            undecodable(b"[1,2]"),
            ("undecodable".to_owned(), "[1,2]".to_owned())
        );
        assert_eq!(
            undecodable(&[0xff, 0x00]),
            ("undecodable".to_owned(), "base64:/wA=".to_owned())
        );
    }
}

#[cfg(test)]
mod liveness_tests {
    use futures_util::StreamExt;

    use super::*;
    use crate::Timeouts;

    fn quick() -> Timeouts {
        Timeouts {
            request: Duration::from_millis(300),
            ws_ping_every: Duration::from_millis(40),
            ws_silent_for: Duration::from_millis(150),
        }
    }

    /// A WebSocket server on loopback that accepts one client; `answering` says whether it
    /// goes on reading (its WebSocket layer answers pings) or hangs after the handshake.
    async fn ws_node(answering: bool) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/v1/ws", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut socket = tokio_tungstenite::accept_async(tcp).await.unwrap();
            if answering {
                while let Some(Ok(_)) = socket.next().await {}
            } else {
                std::future::pending::<()>().await;
            }
        });
        (url, task)
    }

    /// Runs the client side as `watch_once` does until `pings` pings went out or the node
    /// was given up; returns the reason it was given up, if it was.
    async fn watch(url: &str, pings: usize) -> Option<String> {
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut liveness = Liveness::new(quick());
        let mut sent = 0;
        while sent < pings {
            tokio::select! {
                frame = socket.next() => {
                    liveness.heard();
                    assert!(frame.is_some(), "the node closed the socket");
                }
                _ = liveness.pinger.tick() => {
                    if let Err(e) = liveness.ping(&mut socket).await {
                        return Some(e);
                    }
                    sent += 1;
                }
            }
        }
        None
    }

    /// Issue 13: a node that hangs after opening the wake-up socket (SIGSTOP: the kernel
    /// keeps the connection) is given up once it answered no ping for the silence allowed,
    /// instead of being watched for ever.
    #[tokio::test]
    async fn issue_13_a_hung_node_s_websocket_is_given_up() {
        let (url, node) = ws_node(false).await;
        let reason = watch(&url, 1000).await.expect("the hung node was given up");
        assert!(reason.contains("no answer"), "{reason}");
        node.abort();
    }

    /// Issue 13: a node that answers pings is kept, well past the silence allowed.
    #[tokio::test]
    async fn issue_13_a_node_answering_pings_is_kept() {
        let (url, node) = ws_node(true).await;
        // 12 pings at 40 ms span more than three times the 150 ms of silence allowed.
        assert_eq!(watch(&url, 12).await, None);
        node.abort();
    }
}
