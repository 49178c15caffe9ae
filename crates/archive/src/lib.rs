//! The archive directory: an append-only, tamper-evident log of sealed records and of every
//! hold, disposition and archive access, with signed checkpoints.
//!
//! Files (every byte is covered by a hash, a checkpoint signature or both):
//! - `log.bin`: entries `[u32 length][32-byte leaf hash][leaf JSON]`, in log order.
//! - `keys.bin`: one 72-byte slot per record leaf, `[u64 leaf index][64-byte sealed key]`;
//!   disposition overwrites the key with zeros in place (and appends a disposition leaf).
//! - `checkpoints/<size>`: C2SP signed-note checkpoints; `log.vkey`: the verifier key of the
//!   newest ones; `transitions.json`: the keys (and origins) the log moved on from, each with
//!   the size it left them at.
//! - `bindings/<serial>.json`: the custodians' bindings of the archiver (and of its log key)
//!   to the records key: what an auditor trusts ([`audit`]), never `log.vkey`.
//!
//! Appends are durable (fsync) before they are acknowledged. The sealed key is written
//! before its leaf, so a crash leaves at worst an orphan key slot, which is trimmed at open.
//! A failed append (a full disk) is rolled back, both files cut to their last good length,
//! so a retry appends once. Whole files (checkpoints, `log.vkey`) are replaced atomically
//! ([`write_atomic`]); open removes what an interrupted replacement left.

mod files;
pub mod fuzz_bodies;
mod leaf;
mod tiles;
mod verify;

pub use files::{encode_entry, remove_temporaries, write_atomic, Appended, Archive, Faults};
pub use leaf::Leaf;
pub use verify::{audit, verify, witnessed, Audit, Verdict, VerifyReport};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the archive is damaged: {0}; run `vellum archive verify` for details")]
    Damaged(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Log(#[from] vellum_tlog::Error),
}
