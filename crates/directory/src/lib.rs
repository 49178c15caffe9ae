//! The key directory, without I/O: who holds which identity key and which devices each
//! identity approved, as an append-only RFC 6962 log (`vellum-tlog`) that every device
//! replays and checks against cosigned checkpoints.
//!
//! - [`entry`]: the log's entries and the statements identity keys sign;
//! - [`state`]: the rules, by replaying entries ([`DirectoryState`]), and a device's verified
//!   copy ([`Mirror`]);
//! - [`sas`]: device approval by commitment and verification code, and the identity key's
//!   transfer to the approved device;
//! - [`safety`]: safety numbers over identity keys.
//!
//! The server signs the checkpoints; it cannot sign for a user. A device of a user who
//! still holds one is vouched for only by that user's identity key, so neither the server
//! nor the org's certificate key can add a reader (see ARCHITECTURE.md, "Key directory").

pub mod entry;
pub mod safety;
pub mod sas;
pub mod state;

pub use entry::{
    Change, DeviceRef, DirectoryEntry, IdentityKey, Key32, Sig, Statement, ENTRY_VERSION,
    MAX_ENTRY_BYTES,
};
pub use safety::{safety_number, user_digits};
pub use sas::{
    code_matches, commitment, verification_code, ApproverHello, DeviceOffer, HelloSecret,
    OfferSecret, SEALED_IDENTITY_LEN,
};
pub use state::{
    DeviceState, DeviceStatus, DirectoryState, Mirror, PendingReset, UserState, Vouch,
};

/// The directory log's checkpoint origin when the operator names none: one per org key.
pub fn default_origin(org_key: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!(
        "vellum-directory/{}",
        hex::encode(&Sha256::digest(org_key)[..8])
    )
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("malformed directory data: {0}")]
    Malformed(String),
    #[error("directory entry version {0} is newer than this program: upgrade it")]
    UnsupportedVersion(u32),
    #[error("{0}")]
    BadSignature(String),
    #[error("directory entry {index} breaks the directory's rules: {why}")]
    BrokenRule { index: u64, why: String },
    #[error("the server shows a directory of {shown} entries after showing {held}: it went back")]
    Rollback { held: u64, shown: u64 },
    #[error("the directory's checkpoint at size {size} is not the log this device holds: the server forked it")]
    Fork { size: u64 },
    #[error("device approval: {0}")]
    Approval(String),
    #[error("wrong verification code: nothing was approved")]
    WrongCode,
}
