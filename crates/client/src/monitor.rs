//! The device as a monitor of the org's records log, and the keeper of its own receipts.
//!
//! Each sync fetches the archiver's newer checkpoints as the server accepted them, checks
//! every step (bound log key, consistency proof from the one before) and keeps the newest; a
//! fork or a rollback is a loud event in every record chat and an alarm until the end. Each
//! receipt is checked against the custodians' binding, against that chain, and against what
//! this device sent (the leaf's commitments to its text, ids, sender and time); it is kept for
//! `vellum receipts`. `records_alarms` says what is overdue: a checkpoint not renewed or not
//! witnessed, a message of this device without a receipt.

use std::collections::HashMap;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use vellum_record::content::Content;
use vellum_record::{verify_receipt, ArchiverBinding, ReceiptProof, SignedBinding};
use vellum_tlog::{verify_consistency, Checkpoint, Hash, NoteVerifier};
use vellum_wire::{CheckpointChain, DEFAULT_RECEIPT_ALARM_SECS};

use crate::chats::ChatClass;
use crate::store::StoredReceipt;
use crate::{now_millis, Client, Error, MessageKind, MessageRow};

/// What every member of a record chat sees when the archive's log forked or went back.
pub const RECORDS_LOG_CHANGED: &str =
    "Warning: the organisation's archive log forked or went back: \
records may have been altered or removed";

/// The profile key of [`LogWatch`].
const WATCH: &str = "records_log_watch";

/// What this device knows of the records log, kept in its profile.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct LogWatch {
    /// The newest checkpoint of the server's chain this device checked: size, signed note.
    newest: Option<(u64, String)>,
    /// When the archiver last published it (server clock, Unix ms).
    renewed_at: Option<i64>,
    /// This device's clock: when it first followed the log, and when it last saw a newest
    /// checkpoint with the witness quorum.
    first_seen: Option<i64>,
    witnessed_at: Option<i64>,
    cosigners: usize,
    quorum: usize,
    /// The org policy's alarm time, as of the last sync.
    alarm_secs: Option<u64>,
    /// A fork or rollback this device saw; kept for good.
    alarm: Option<String>,
}

/// The newest checkpoint of the org's archive log this device checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordsLogView {
    pub size: u64,
    /// The bound witnesses that cosigned it, and how many the custodians require.
    pub cosigners: usize,
    pub quorum: usize,
    /// When the archiver last published it (server clock, Unix ms).
    pub renewed_at: Option<i64>,
}

/// The bound log and what this sync learnt of it.
pub(crate) struct Records {
    binding: ArchiverBinding,
    /// The binding as the server published it (JSON), kept with each receipt.
    signed: String,
    /// Root of each checkpoint of the server's chain this sync checked, by size.
    roots: HashMap<u64, Hash>,
}

fn open(note: &str, binding: &ArchiverBinding) -> Option<Checkpoint> {
    let text = NoteVerifier::open(note, &[binding.log_verifier()]).ok()?;
    Checkpoint::parse(text)
        .ok()
        .filter(|c| c.origin == binding.origin)
}

fn hashes(hex_hashes: &[String]) -> Option<Vec<Hash>> {
    hex_hashes
        .iter()
        .map(|h| hex::decode(h).ok()?.try_into().ok())
        .collect()
}

impl Client {
    fn log_watch(&self) -> Result<LogWatch, Error> {
        Ok(self
            .store
            .profile_get(WATCH)?
            .and_then(|raw| serde_json::from_slice(&raw).ok())
            .unwrap_or_default())
    }

    fn save_log_watch(&self, watch: &LogWatch) -> Result<(), Error> {
        let raw = serde_json::to_vec(watch).expect("the watch serialises");
        // Every sync saves it, mostly unchanged: no commit (and fsync) for nothing.
        if self.store.profile_get(WATCH)?.as_deref() == Some(raw.as_slice()) {
            return Ok(());
        }
        self.store.profile_set(WATCH, &raw)
    }

    /// At the start of a sync: the archiver the custodians bound (`None` while there is
    /// none) and the server's chain of its checkpoints, checked step by step from the newest
    /// this device holds. Returns the events a fork or rollback put in the record chats.
    pub(crate) async fn follow_records_log(
        &mut self,
    ) -> Result<(Option<Records>, Vec<MessageRow>), Error> {
        // The records trust read fresh with the policy: a new binding (a replaced archiver,
        // another log key) must be known before its checkpoints are judged.
        let policy = self.refresh_trust().await?;
        let mut watch = self.log_watch()?;
        watch.alarm_secs = Some(policy.receipt_alarm_secs);
        // The archiver the custodians bound, verified against the records.pub this device
        // pinned: never what the server says today.
        let binding = match self.bound_archiver()? {
            Some(binding) => binding,
            None => {
                tracing::debug!("no bound archive log to follow");
                self.save_log_watch(&watch)?;
                return Ok((None, Vec::new()));
            }
        };
        // The signed text, for receipts a device exports: the server's, if it is this binding.
        let signed = policy
            .records_binding
            .clone()
            .filter(|text| {
                vellum_record::SignedBinding::parse(text)
                    .and_then(|s| s.stored_statement())
                    .is_ok_and(|statement| statement == binding)
            })
            .unwrap_or_default();
        let mut records = Records {
            signed,
            binding,
            roots: HashMap::new(),
        };
        watch.quorum = records.binding.witness_quorum as usize;
        let now = now_millis();
        watch.first_seen.get_or_insert(now);
        let problem = self.follow_chain(&mut records, &mut watch).await?;
        let mut events = Vec::new();
        if let Some(why) = problem {
            if watch.alarm.as_ref() != Some(&why) {
                events = self.log_changed(&why)?;
                watch.alarm = Some(why);
            }
        }
        if let Some((_, note)) = &watch.newest {
            watch.cosigners = vellum_record::cosigners(note, &records.binding).len();
            if watch.cosigners >= watch.quorum {
                watch.witnessed_at = Some(now);
            }
        }
        self.save_log_watch(&watch)?;
        Ok((Some(records), events))
    }

    /// Walks the server's chain from this device's newest checkpoint; moves `watch.newest`
    /// forward over every step that checks. Returns what is wrong, if anything.
    async fn follow_chain(
        &self,
        records: &mut Records,
        watch: &mut LogWatch,
    ) -> Result<Option<String>, Error> {
        let binding = records.binding.clone();
        let mut held: Option<(u64, Hash, String)> = watch
            .newest
            .as_ref()
            .and_then(|(size, note)| open(note, &binding).map(|c| (*size, c.root, note.clone())));
        let mut first = true;
        let mut from = match &held {
            Some((size, _, _)) => *size,
            // A device that never followed the log starts at its newest checkpoint, not at
            // the beginning of a chain that may be years long.
            None => {
                let path = format!("/v1/records/checkpoints?from={}&limit=1", u64::MAX);
                let probe: CheckpointChain = self.request(Method::GET, &path, None::<&()>).await?;
                match probe.head_size {
                    Some(head) => head,
                    None => return Ok(None),
                }
            }
        };
        loop {
            let path = format!("/v1/records/checkpoints?from={from}");
            let chain: CheckpointChain = self.request(Method::GET, &path, None::<&()>).await?;
            let mut steps = chain.checkpoints.iter().peekable();
            if let (true, Some((size, root, note))) = (first, held.as_mut()) {
                match steps.peek() {
                    Some(c) if c.size == *size => {
                        let Some(theirs) = open(&c.note, &binding) else {
                            return Ok(Some(format!(
                                "the server's checkpoint of {size} leaves is not signed by the bound log key"
                            )));
                        };
                        if theirs.root != *root {
                            return Ok(Some(format!(
                                "the checkpoint of {size} leaves the server now holds is not the one this device saw"
                            )));
                        }
                        // The same tree, perhaps with more cosignatures since.
                        if vellum_record::cosigners(&c.note, &binding).len()
                            > vellum_record::cosigners(note, &binding).len()
                        {
                            *note = c.note.clone();
                        }
                        records.roots.insert(*size, *root);
                        steps.next();
                    }
                    _ => {
                        let head = chain.head_size.unwrap_or(0);
                        return Ok(Some(if head < *size {
                            format!(
                                "the server's newest checkpoint has {head} leaves but this device saw one of {size}"
                            )
                        } else {
                            format!(
                                "the server no longer holds the checkpoint of {size} leaves this device saw"
                            )
                        }));
                    }
                }
            }
            first = false;
            for c in steps {
                let Some(checkpoint) = open(&c.note, &binding) else {
                    return Ok(Some(format!(
                        "the server published a checkpoint of {} leaves not signed by the bound log key",
                        c.size
                    )));
                };
                if checkpoint.size != c.size {
                    return Ok(Some(format!(
                        "the server filed a checkpoint of {} leaves as {}",
                        checkpoint.size, c.size
                    )));
                }
                if let Some((size, root, _)) = &held {
                    let consistent = c.previous_size == *size
                        && c.size > *size
                        && hashes(&c.proof).is_some_and(|proof| {
                            verify_consistency(*size, c.size, root, &checkpoint.root, &proof)
                                .is_ok()
                        });
                    if !consistent {
                        return Ok(Some(format!(
                            "the checkpoint of {} leaves is not a consistent extension of the one of {size}",
                            c.size
                        )));
                    }
                }
                records.roots.insert(c.size, checkpoint.root);
                held = Some((c.size, checkpoint.root, c.note.clone()));
                watch.newest = Some((c.size, c.note.clone()));
            }
            if let Some((size, _, note)) = &held {
                watch.newest = Some((*size, note.clone()));
                if chain.head_size == Some(*size) {
                    watch.renewed_at = chain.renewed_at;
                }
            }
            if !chain.more {
                return Ok(None);
            }
            from = held.as_ref().map_or(from, |(size, _, _)| *size);
        }
    }

    /// The loud event of a changed log, in every record chat this device is in.
    fn log_changed(&self, why: &str) -> Result<Vec<MessageRow>, Error> {
        tracing::error!(%why, "{RECORDS_LOG_CHANGED}");
        let mut events = Vec::new();
        for chat in self.store.chats()? {
            if chat.removed || !matches!(self.chat_class(&chat.group_id), Ok(ChatClass::Record)) {
                continue;
            }
            let text = format!("{RECORDS_LOG_CHANGED} ({why}).");
            self.record_event(&chat.group_id, None, "", &text)?;
            if let Some(event) = self
                .store
                .history(&chat.group_id)?
                .into_iter()
                .rev()
                .find(|m| m.kind == MessageKind::Event && m.text == text)
            {
                events.push(event);
            }
        }
        Ok(events)
    }

    /// Checks an archive receipt and keeps it with the message it proves. Whatever does not
    /// verify proves nothing: it is reported and dropped. A leaf that does not commit to what
    /// this device sent is a loud event in the chat. A receipt whose checkpoint is not the
    /// server's checkpoint of that size is a fork.
    pub(crate) async fn apply_receipt(
        &mut self,
        receipt: &str,
        records: &mut Records,
    ) -> Result<Vec<MessageRow>, Error> {
        let verified = match verify_receipt(receipt, &records.binding) {
            Ok(v) => v,
            Err(why) => {
                tracing::warn!(error = %why, "dropping an archive receipt that does not verify");
                return Ok(Vec::new());
            }
        };
        let tree = &verified.checkpoint.checkpoint;
        let published = match records.roots.get(&tree.size) {
            Some(root) => Some(*root),
            None => {
                let path = format!("/v1/records/checkpoints?from={}&limit=1", tree.size);
                let chain: CheckpointChain = self.request(Method::GET, &path, None::<&()>).await?;
                chain
                    .checkpoints
                    .first()
                    .filter(|c| c.size == tree.size)
                    .and_then(|c| open(&c.note, &records.binding))
                    .map(|c| c.root)
            }
        };
        if published != Some(tree.root) {
            let why = format!(
                "an archive receipt names a checkpoint of {} leaves the server {}",
                tree.size,
                if published.is_some() {
                    "holds another tree for"
                } else {
                    "never published"
                }
            );
            let mut watch = self.log_watch()?;
            if watch.alarm.as_ref() == Some(&why) {
                return Ok(Vec::new());
            }
            let events = self.log_changed(&why)?;
            watch.alarm = Some(why);
            self.save_log_watch(&watch)?;
            return Ok(events);
        }
        records.roots.insert(tree.size, tree.root);
        let r = &verified.receipt;
        // Receipts also come for deletes, titles and kinds this version cannot read: they
        // tell the server the archiver is keeping up; only messages are kept here.
        let Some(id) = r.message_id.as_deref() else {
            return Ok(Vec::new());
        };
        let Some(row) = self.store.message(&r.chat_id, id)? else {
            tracing::debug!(chat = %r.chat_id, seq = r.seq, "receipt for a message no longer here");
            return Ok(Vec::new());
        };
        if row.kind != MessageKind::Text
            || row.sender_device != self.device_id
            || row.seq != Some(r.seq)
        {
            tracing::debug!(chat = %r.chat_id, seq = r.seq, "receipt for no message of this device");
            return Ok(Vec::new());
        }
        if let Some(salt) = row.salt {
            if verified.commitments != Some(content_of(&row).commit(&salt)) {
                let text = format!(
                    "Warning: the archive's receipt for your message {id} does not commit to what you sent (its text, ids, sender or time differ); it is not counted as archived."
                );
                tracing::error!(chat = %r.chat_id, id, "{text}");
                self.record_event(&r.chat_id, Some(r.seq), "", &text)?;
                let event = self
                    .store
                    .history(&r.chat_id)?
                    .into_iter()
                    .rev()
                    .find(|m| m.text == text);
                return Ok(event.into_iter().collect());
            }
        }
        self.store.add_receipt(&StoredReceipt {
            group_id: r.chat_id.clone(),
            message_id: id.to_owned(),
            leaf_index: r.leaf_index,
            receipt: receipt.to_owned(),
            binding: records.signed.clone(),
            received_at: now_millis(),
        })?;
        Ok(Vec::new())
    }

    /// The kept receipts of a chat (or of one message of it), with their messages.
    pub fn receipts(
        &self,
        chat: &str,
        message_id: Option<&str>,
    ) -> Result<Vec<(StoredReceipt, MessageRow)>, Error> {
        let group_id = self.resolve_chat(chat)?;
        let mut out = Vec::new();
        for r in self.store.receipts(&group_id, message_id)? {
            if let Some(m) = self.store.message(&group_id, &r.message_id)? {
                out.push((r, m));
            }
        }
        if let (Some(id), true) = (message_id, out.is_empty()) {
            return Err(Error::Invalid(format!(
                "no archive receipt of message {id} in this chat: it is not yours, not archived yet, or shredded"
            )));
        }
        Ok(out)
    }

    /// One message's self-contained proof for a third party: the custodians' binding, the
    /// receipt, and every field's disclosure.
    pub fn receipt_proof(&self, chat: &str, message_id: &str) -> Result<ReceiptProof, Error> {
        let (stored, row) = self
            .receipts(chat, Some(message_id))?
            .into_iter()
            .next()
            .expect("receipts() errs when there is none");
        let salt = row.salt.ok_or_else(|| {
            Error::Invalid(format!(
                "message {message_id} was sent before content commitments: its receipt proves it was archived, not what it said"
            ))
        })?;
        let corrupt = |what: &str, e: &dyn std::fmt::Display| {
            Error::Store(format!("the kept {what} of {message_id} is corrupt: {e}"))
        };
        Ok(ReceiptProof {
            version: vellum_record::RECEIPT_PROOF_VERSION,
            binding: SignedBinding::parse(&stored.binding).map_err(|e| corrupt("binding", &e))?,
            receipt: serde_json::from_str(&stored.receipt).map_err(|e| corrupt("receipt", &e))?,
            disclosures: content_of(&row).disclose(&salt),
        })
    }

    /// The newest checkpoint of the archive log this device checked, if it follows one.
    pub fn records_log(&self) -> Result<Option<RecordsLogView>, Error> {
        let watch = self.log_watch()?;
        Ok(watch.newest.map(|(size, _)| RecordsLogView {
            size,
            cosigners: watch.cosigners,
            quorum: watch.quorum,
            renewed_at: watch.renewed_at,
        }))
    }

    /// What is overdue or wrong about the records log, as of `now` (Unix ms on this device's
    /// clock): a fork or rollback seen, a newest checkpoint not renewed or not witnessed for
    /// the org's alarm time, and this device's messages in record chats without a receipt
    /// that long. Reads only the profile (the last sync's view).
    pub fn records_alarms(&self, now: i64) -> Result<Vec<String>, Error> {
        let watch = self.log_watch()?;
        let alarm_secs = watch.alarm_secs.unwrap_or(DEFAULT_RECEIPT_ALARM_SECS);
        let limit = (alarm_secs as i64).saturating_mul(1000);
        let ago = |t: i64| vellum_wire::timer::describe(((now - t).max(0) / 1000) as u64);
        let mut alarms = Vec::new();
        if let Some(why) = &watch.alarm {
            alarms.push(format!("{RECORDS_LOG_CHANGED} ({why})"));
        }
        if let Some((size, _)) = &watch.newest {
            if let Some(renewed) = watch.renewed_at.filter(|r| now - r > limit) {
                alarms.push(format!(
                    "the archive's newest checkpoint ({size} leaves) was last published {} ago: the archiver may have stopped",
                    ago(renewed)
                ));
            }
            let since = watch.witnessed_at.or(watch.first_seen).unwrap_or(now);
            if watch.cosigners < watch.quorum && now - since > limit {
                alarms.push(format!(
                    "the archive's newest checkpoint ({size} leaves) has {} of the {} witness cosignatures the custodians require, and none had them for {}",
                    watch.cosigners,
                    watch.quorum,
                    ago(since)
                ));
            }
        }
        for (chat, count, oldest) in self.store.awaiting_receipts(&self.device_id, now - limit)? {
            if !matches!(self.chat_class(&chat), Ok(ChatClass::Record)) {
                continue;
            }
            let title = self
                .store
                .chat(&chat)?
                .and_then(|c| c.title)
                .unwrap_or_else(|| chat.clone());
            alarms.push(format!(
                "{count} of your messages in {title} have had no archive receipt for more than {} (the oldest sent {} ago)",
                vellum_wire::timer::describe(alarm_secs),
                ago(oldest)
            ));
        }
        Ok(alarms)
    }
}

/// What the archive's leaf of one of this device's messages commits to.
fn content_of(row: &MessageRow) -> Content {
    Content {
        kind: "message".into(),
        chat_id: row.group_id.clone(),
        message_id: Some(row.id.clone()),
        sender_user: row.sender_user.clone(),
        sender_device: row.sender_device.clone(),
        sent_at: row.sent_at,
        text: Some(row.text.clone()),
    }
}
