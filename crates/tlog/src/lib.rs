//! The tamper-evident log, sans I/O: RFC 6962 / RFC 9162 Merkle tree hashing with inclusion
//! and consistency proofs, and checkpoints in the C2SP tlog-checkpoint format, signed as C2SP
//! signed notes (Ed25519).
//!
//! Every record, hold, disposition and archive access becomes a leaf; an auditor holding
//! an old checkpoint can check that a newer one extends it without reading any content.

mod checkpoint;
pub mod cosignature;
pub mod fuzz_bodies;
mod merkle;
mod note;
pub mod tiles;

pub use checkpoint::Checkpoint;
pub use merkle::{
    consistency_proof, empty_root, inclusion_proof, leaf_hash, node_hash, root, verify_consistency,
    verify_inclusion, Hash, RootBuilder,
};
pub use note::{NoteSigner, NoteVerifier};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("index {index} is outside a tree of {size} leaves")]
    OutOfRange { index: u64, size: u64 },
    #[error("proof does not verify")]
    BadProof,
    #[error("malformed note: {0}")]
    MalformedNote(String),
    #[error("malformed key: {0}")]
    MalformedKey(String),
    #[error("no signature by a trusted key verifies this note")]
    Unverified,
    #[error("a signature by trusted key {0} does not verify")]
    BadSignature(String),
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(String),
    #[error("malformed tile: {0}")]
    MalformedTile(String),
}
