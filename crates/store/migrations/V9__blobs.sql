-- Issue 10: end-to-end encrypted attachments. The server holds each file as numbered
-- ciphertext chunks of the group it was uploaded to; it never sees the key.
CREATE TABLE blobs (
    blob_id TEXT PRIMARY KEY,
    group_id TEXT NOT NULL,
    uploader_device TEXT NOT NULL,
    uploader_user TEXT NOT NULL,
    -- Plaintext bytes and bytes per chunk, as declared at creation: every chunk's
    -- ciphertext length follows from them.
    size INTEGER NOT NULL,
    chunk_size INTEGER NOT NULL,
    chunks INTEGER NOT NULL,
    -- 1 in a record chat: kept until the archiver fetched it.
    record INTEGER NOT NULL,
    -- Unix ms of purge (the message's expiry), if any.
    expires_at INTEGER,
    created_at INTEGER NOT NULL,
    finished INTEGER NOT NULL DEFAULT 0,
    archived INTEGER NOT NULL DEFAULT 0,
    -- Deleted for everyone while the archiver still had to fetch it: hidden from members.
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX blobs_by_user ON blobs (uploader_user);
CREATE INDEX blobs_by_expiry ON blobs (expires_at);
CREATE TABLE blob_chunks (
    blob_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (blob_id, idx)
);
