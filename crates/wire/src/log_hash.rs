//! The running hash over a group's log, which lets a device notice a server that went back
//! in time (restored from a backup) or shows different members different histories.
//!
//! `hash_0 = SHA-256("vellum-log-v1" || len || group_id)` and
//! `hash_n = SHA-256(hash_{n-1} || seq || epoch || kind || len || sender || len || payload)`,
//! integers big-endian u64, `kind` one byte (1 commit, 2 application).

use sha2::{Digest, Sha256};

use crate::EntryKind;

/// The hash before a group's first entry.
pub fn log_hash_start(group_id: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"vellum-log-v1");
    h.update((group_id.len() as u64).to_be_bytes());
    h.update(group_id.as_bytes());
    h.finalize().into()
}

/// The hash after appending one entry to a log whose hash was `prev`.
pub fn log_hash_next(
    prev: &[u8; 32],
    seq: u64,
    epoch: u64,
    kind: EntryKind,
    sender_device: &str,
    payload: &[u8],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(epoch.to_be_bytes());
    h.update([match kind {
        EntryKind::Commit => 1u8,
        EntryKind::Application => 2,
        EntryKind::Proposal => 3,
    }]);
    h.update((sender_device.len() as u64).to_be_bytes());
    h.update(sender_device.as_bytes());
    h.update((payload.len() as u64).to_be_bytes());
    h.update(payload);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_changes_the_hash() {
        let start = log_hash_start("g");
        assert_ne!(start, log_hash_start("h"));
        let base = log_hash_next(&start, 1, 0, EntryKind::Application, "d", b"p");
        for other in [
            log_hash_next(&[0; 32], 1, 0, EntryKind::Application, "d", b"p"),
            log_hash_next(&start, 2, 0, EntryKind::Application, "d", b"p"),
            log_hash_next(&start, 1, 1, EntryKind::Application, "d", b"p"),
            log_hash_next(&start, 1, 0, EntryKind::Commit, "d", b"p"),
            log_hash_next(&start, 1, 0, EntryKind::Proposal, "d", b"p"),
            log_hash_next(&start, 1, 0, EntryKind::Application, "e", b"p"),
            log_hash_next(&start, 1, 0, EntryKind::Application, "d", b"q"),
            // lengths are framed: moving a byte between sender and payload changes it too
            log_hash_next(&start, 1, 0, EntryKind::Application, "dp", b""),
        ] {
            assert_ne!(base, other);
        }
    }
}
