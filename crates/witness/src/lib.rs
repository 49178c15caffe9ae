//! `vellum witness`: a C2SP tlog-witness (https://c2sp.org/tlog-witness) that an overseer
//! runs on its own host. It follows the logs whose keys it was given, keeps the newest
//! checkpoint of each, and returns a C2SP tlog-cosignature (cosignature/v1, Ed25519) only
//! for a checkpoint that consistently extends the one it holds.
//!
//! - [`protocol`]: the request body and the checks, sans I/O;
//! - [`Witness`]: the data directory (key, followed logs, state per log) and `add-checkpoint`;
//! - [`app`]: the HTTP interface (`POST /add-checkpoint`, `GET /<origin hash>/checkpoint`);
//! - [`submit`]: the client side, for a log that asks for cosignatures.

mod client;
pub mod fuzz_bodies;
mod http;
pub mod protocol;
mod witness;

pub use client::{cosign, submit, CosignError, Submitted, WitnessTarget};
pub use http::{app, serve, MAX_BODY_BYTES};
pub use protocol::{AddCheckpoint, Refusal};
pub use witness::{latest, origin_hash, verifier_key, Witness};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Io(String),
    #[error("{0} is damaged; the witness will not guess its state")]
    Corrupt(String),
    #[error("another witness is running on {0}")]
    InUse(String),
    #[error("not a log's note verifier key: {0}")]
    BadLogKey(String),
    #[error(transparent)]
    Key(#[from] vellum_tlog::Error),
    #[error("the witness could not be reached: {0}")]
    Network(String),
    #[error("the witness refused the checkpoint ({status}): {message}")]
    Refused { status: u16, message: String },
}
