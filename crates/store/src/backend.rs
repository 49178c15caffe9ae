//! What every `Store` backend shares: the replay window of request nonces, the group
//! commit of the log, the SQL expressions both dialects accept, and how values are encoded
//! in columns. A backend imports these rather than keeping its own copy, so the backends
//! cannot drift apart.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use vellum_wire::{DeviceState, EntryKind};

use crate::{Appended, Error, MessageAppend, NonceCheck, Result};

/// Nonces are kept in buckets of this many seconds of request timestamps, so forgetting
/// the ones outside the window drops whole buckets.
pub const NONCE_BUCKET_SECS: i64 = 10;

/// Nonces seen in the replay window, by request timestamp bucket, each as its
/// [`nonce_key`].
#[derive(Default)]
pub struct NonceWindow {
    pub(crate) buckets: BTreeMap<i64, HashSet<[u8; 16]>>,
    /// The oldest bucket still kept: a timestamp before it may have been seen and forgotten,
    /// whatever `forget_before` a slow request computed earlier.
    kept_from: i64,
}

impl NonceWindow {
    pub fn remember(
        &mut self,
        device_id: &str,
        nonce: &str,
        timestamp: i64,
        forget_before: i64,
    ) -> NonceCheck {
        // Drop every bucket whose newest timestamp is before the window; never keep from
        // earlier than before, so a request judged against an older clock reading cannot
        // slip into a bucket that was already forgotten.
        let keep_from = forget_before
            .div_euclid(NONCE_BUCKET_SECS)
            .max(self.kept_from);
        self.kept_from = keep_from;
        self.buckets = self.buckets.split_off(&keep_from);
        if timestamp.div_euclid(NONCE_BUCKET_SECS) < keep_from {
            return NonceCheck::Expired;
        }
        let fresh = self
            .buckets
            .entry(timestamp.div_euclid(NONCE_BUCKET_SECS))
            .or_default()
            .insert(nonce_key(device_id, nonce, timestamp));
        if fresh {
            NonceCheck::Fresh
        } else {
            NonceCheck::Replayed
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buckets.values().map(HashSet::len).sum()
    }
}

/// What identifies a signed request among those remembered: 128 bits of SHA-256 over
/// (device, timestamp, nonce). A replay repeats all three, since the signature covers them.
pub fn nonce_key(device_id: &str, nonce: &str, timestamp: i64) -> [u8; 16] {
    let mut h = Sha256::new();
    for part in [
        device_id.as_bytes(),
        &timestamp.to_be_bytes(),
        nonce.as_bytes(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    let digest = h.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

/// Now, in Unix seconds.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// True when the group named by the SQL expression `group_id` is a transitory chat with a
/// current member under a legal hold. Without any hold (the usual case) it costs one lookup.
pub fn held_chat(group_id: &str) -> String {
    format!(
        "(EXISTS (SELECT 1 FROM held_users) AND EXISTS (
    SELECT 1 FROM groups g
    JOIN memberships m ON m.group_id = g.group_id AND m.removed_seq IS NULL
    JOIN devices d ON d.device_id = m.device_id
    JOIN held_users h ON h.user = d.user
    WHERE g.group_id = {group_id} AND g.record = 0))"
    )
}

/// The archiver device on file, unless it was revoked since (a column expression over
/// `records_config`).
pub const LIVE_ARCHIVER: &str = "(SELECT device_id FROM devices
    WHERE device_id = records_config.archiver_device AND revoked_at IS NULL)";

pub fn opt_i64(v: Option<u64>) -> Option<i64> {
    v.map(|v| v as i64)
}

pub fn opt_u64(v: Option<i64>) -> Option<u64> {
    v.map(|v| v as u64)
}

pub fn kind_from(s: &str) -> Result<EntryKind> {
    match s {
        "commit" => Ok(EntryKind::Commit),
        "application" => Ok(EntryKind::Application),
        "proposal" => Ok(EntryKind::Proposal),
        other => Err(Error::Backend(format!("unknown log entry kind {other:?}"))),
    }
}

pub fn hash_from(bytes: Option<Vec<u8>>) -> Result<[u8; 32]> {
    bytes
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| Error::Backend("a log entry without its log hash".into()))
}

pub fn state_str(state: DeviceState) -> &'static str {
    match state {
        DeviceState::Approved => "approved",
        DeviceState::Pending => "pending",
        DeviceState::Legacy => "legacy",
        DeviceState::Revoked => "revoked",
    }
}

/// The lease of a backend that only one process can open: always held.
pub struct SoleNode;

impl crate::JobLease for SoleNode {
    fn is_held(&self) -> bool {
        true
    }
}

/// A backend's log, appended to in batches: see [`AppendBatcher`].
#[async_trait::async_trait]
pub trait AppendLog: Clone + Send + Sync + 'static {
    /// Appends `batch` in order, in one transaction with one commit: each message as
    /// `append_message` would, under a savepoint of its own, so that a refused one
    /// (`NotMember`, `StaleEpoch`, …) changes nothing and fails alone. `Err` when the
    /// transaction itself failed: then nothing was committed.
    async fn append_batch(&self, batch: Vec<MessageAppend>) -> Result<Vec<Result<Appended>>>;
}

struct QueuedAppend {
    message: MessageAppend,
    answer: oneshot::Sender<Result<Appended>>,
}

/// Group commit of application messages, the server's hot path: concurrent
/// `append_message` calls share one transaction and one commit (one fsync) instead of
/// paying one each. A caller queues its message, then waits for the writer; whoever gets
/// it takes everything queued (up to `max_batch`) as one batch, and every caller of the
/// batch is answered only once it committed (or failed). A caller whose message an earlier
/// batch took finds its answer when its turn at the writer comes.
pub struct AppendBatcher {
    queue: Mutex<VecDeque<QueuedAppend>>,
    /// Held by the batch being written, until each of its callers is answered.
    writer: Arc<tokio::sync::Mutex<()>>,
    max_batch: usize,
    commits: Arc<AtomicU64>,
}

impl AppendBatcher {
    pub fn new(max_batch: usize) -> Self {
        Self {
            queue: Mutex::default(),
            writer: Arc::default(),
            max_batch: max_batch.max(1),
            commits: Arc::default(),
        }
    }

    /// Batches committed so far.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Appends `message` to `log` in the next batch, and its result once that committed.
    pub async fn append<L: AppendLog>(&self, log: &L, message: MessageAppend) -> Result<Appended> {
        let (answer, mut answered) = oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(QueuedAppend { message, answer });
        loop {
            let writer = self.writer.clone().lock_owned().await;
            // The writer is only released once its batch was answered: no answer now means
            // this message is still queued.
            match answered.try_recv() {
                Ok(result) => return result,
                Err(oneshot::error::TryRecvError::Closed) => {
                    return Err(Error::Backend("the batch of this append failed".into()))
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let batch: Vec<QueuedAppend> = {
                let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                let n = queue.len().min(self.max_batch);
                // A message whose caller stopped waiting (a dropped request) before any
                // batch took it is not appended: nobody acknowledged it, the client retries.
                queue.drain(..n).filter(|q| !q.answer.is_closed()).collect()
            };
            let log = log.clone();
            let commits = self.commits.clone();
            // A task of its own, so that a caller that stops waiting (a dropped request)
            // leaves the others' batch to finish, still holding the writer.
            tokio::spawn(async move {
                let _writer = writer;
                let (messages, answers): (Vec<_>, Vec<_>) =
                    batch.into_iter().map(|q| (q.message, q.answer)).unzip();
                match log.append_batch(messages).await {
                    Ok(results) => {
                        commits.fetch_add(1, Ordering::Relaxed);
                        for (answer, result) in answers.into_iter().zip(results) {
                            let _ = answer.send(result);
                        }
                    }
                    Err(e) => {
                        for answer in answers {
                            let _ = answer.send(Err(shared_error(&e)));
                        }
                    }
                }
            });
        }
    }
}

/// The error of a failed batch, for each of its callers.
fn shared_error(e: &Error) -> Error {
    match e {
        Error::DiskFull => Error::DiskFull,
        Error::Backend(message) => Error::Backend(message.clone()),
        other => Error::Backend(other.to_string()),
    }
}
