//! Attachment blobs (issue 10): the server stores each end-to-end encrypted file as
//! numbered ciphertext chunks of one group.

use serde::{Deserialize, Serialize};

/// Bounds on plaintext bytes per chunk (clients use 64 KiB).
pub const MIN_CHUNK_SIZE: u32 = 4 * 1024;
pub const MAX_CHUNK_SIZE: u32 = 1024 * 1024;

/// `POST /v1/groups/{group_id}/blobs`: starts an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreateBlob {
    /// Plaintext bytes of the file.
    pub size: u64,
    /// Plaintext bytes per chunk (the last may be shorter); each chunk's ciphertext is 16
    /// bytes longer. An empty file is one empty chunk.
    pub chunk_size: u32,
    /// Unix ms at which the blob is purged (its message's expiry); the server shortens it
    /// to the chat's and the org's limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlobCreated {
    pub blob: String,
    pub chunks: u64,
}

/// `GET /v1/blobs/{blob}`: where an upload stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlobStatus {
    pub blob: String,
    pub group_id: String,
    pub size: u64,
    pub chunk_size: u32,
    pub chunks: u64,
    /// Chunks stored, `0..present` (they are taken in order).
    pub present: u64,
    pub complete: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}
