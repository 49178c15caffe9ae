#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("malformed MLS message: {0}")]
    Malformed(String),
    #[error("MLS message rejected: {0}")]
    Rejected(String),
    #[error("message is for epoch {got}, the group is at epoch {current}")]
    WrongEpoch { current: u64, got: u64 },
    #[error("message belongs to another group")]
    WrongGroup,
    #[error("expected {0}")]
    UnexpectedMessage(&'static str),
    #[error("commit is signed by {signer}, not by the requesting device {requester}")]
    SenderMismatch { signer: String, requester: String },
    #[error("invalid device credential: {0}")]
    Credential(String),
    /// The committer may not make that change in this chat (issue 10 roles).
    #[error("{0}")]
    Unauthorized(String),
}

impl From<mls_rs::error::MlsError> for Error {
    fn from(e: mls_rs::error::MlsError) -> Self {
        Error::Rejected(e.to_string())
    }
}
