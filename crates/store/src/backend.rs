//! What every `Store` backend shares: the replay window of request nonces, the SQL
//! expressions both dialects accept, and how values are encoded in columns. A backend
//! imports these rather than keeping its own copy, so the backends cannot drift apart.

use std::collections::{BTreeMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use vellum_wire::{DeviceState, EntryKind};

use crate::{Error, NonceCheck, Result};

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
