//! The archive directory: an append-only, tamper-evident log of sealed records and of every
//! hold, disposition and archive access, with signed checkpoints.
//!
//! Files (every byte is covered by a hash, a checkpoint signature or both):
//! - `log.bin`: entries in log order. A record's entry carries its sealed content key:
//!   `[u32 0x80000000 | length][32-byte leaf hash][64-byte sealed key][leaf JSON]`; every
//!   other entry is `[u32 length][32-byte leaf hash][leaf JSON]`. The leaf hash covers the
//!   JSON, whose `key_hash` commits to the key; disposition overwrites the key with zeros in
//!   place (and appends a disposition leaf).
//! - `keys.bin`, only in archives begun before records carried their keys (issue 8): one
//!   72-byte slot `[u64 leaf index][64-byte sealed key]` per record whose entry has no key,
//!   in log order. Such archives are read as they are, never rewritten: their old records
//!   keep their slots (wiped there on disposition) and new records carry their keys.
//! - `checkpoints/<size>`: C2SP signed-note checkpoints; `log.vkey`: the verifier key of the
//!   newest ones; `transitions.json`: the keys (and origins) the log moved on from, each with
//!   the size it left them at.
//! - `bindings/<serial>.json`: the custodians' bindings of the archiver (and of its log key)
//!   to the records key: what an auditor trusts ([`audit`]), never `log.vkey`.
//!
//! Appends are durable before they are acknowledged: one write and one fsync per leaf, a
//! record included. A crash mid-append leaves a cut-short entry at the end of log.bin, which
//! open trims (it was never acknowledged). A failed append (a full disk) is rolled back,
//! log.bin cut to its last good length, so a retry appends once. Whole files (checkpoints,
//! `log.vkey`) are replaced atomically ([`write_atomic`]); open removes what an interrupted
//! replacement left.

mod files;
pub mod fuzz_bodies;
mod leaf;
mod tiles;
mod verify;

pub use files::{
    encode_entry, encode_record_entry, remove_temporaries, write_atomic, Appended, Archive, Faults,
};
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
