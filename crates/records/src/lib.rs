//! The records office's cryptography, sans I/O.
//!
//! - The records key pair is an HPKE (RFC 9180) key derived from a 32-byte seed. The seed is
//!   never stored whole: `generate` splits it into n Shamir shares with threshold k, and
//!   `records.pub` commits to every share (SHA-256), so a corrupted or foreign share is named
//!   before any reconstruction, and a wrong reconstruction is caught against the public key.
//! - Each record is sealed under a fresh content key (AES-128-GCM), and that key is sealed to
//!   the records public key with HPKE. Destroying the sealed content key (disposition)
//!   destroys the record, while the log of its ciphertext stays whole.

pub mod fuzz_bodies;
mod keys;
mod seal;

pub use keys::{generate, Generated, RecordsSecret, UnsealProgress, Unsealer};
pub use seal::{open, seal, SealedRecord, SEALED_KEY_LEN};
pub use vellum_record::{
    unbound_archiver, ArchiverBinding, PreviousLog, RecordsPublic, SignedBinding, TrustError,
    BINDING_VERSION,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("invalid key split: {0}")]
    InvalidSplit(String),
    #[error("not a records share file: {0}")]
    MalformedShare(String),
    #[error("share {0} is corrupted or belongs to another records key")]
    CorruptedShare(u8),
    #[error("share {0} was already given")]
    DuplicateShare(u8),
    #[error("the shares do not reconstruct this records key")]
    WrongKey,
    #[error("records.pub is malformed: {0}")]
    MalformedPublic(String),
    #[error("sealed record does not open: {0}")]
    Open(String),
}

impl From<vellum_record::TrustError> for Error {
    fn from(e: vellum_record::TrustError) -> Self {
        Error::MalformedPublic(e.to_string())
    }
}
