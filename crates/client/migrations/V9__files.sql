-- Issue 10: attachments. An upload in progress, so that sending the same file again
-- resumes it (the row and its key go once the message is sent), and the files `download`
-- saved inside the profile, deleted by the shredder with their message.
CREATE TABLE uploads (
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    group_id TEXT NOT NULL,
    blob_id TEXT NOT NULL,
    key BLOB NOT NULL,
    nonce BLOB NOT NULL,
    sha256 TEXT NOT NULL,
    chunk_size INTEGER NOT NULL,
    PRIMARY KEY (path, size, mtime_ns, group_id)
);
CREATE TABLE downloads (
    path TEXT PRIMARY KEY,
    group_id TEXT NOT NULL,
    message_id TEXT NOT NULL
);
CREATE INDEX downloads_by_message ON downloads (group_id, message_id);
-- The archiver's files to fetch: queued in the transaction of their message's entry, so
-- that none is missed across a crash; each goes once sealed into the archive.
CREATE TABLE archive_files (
    id INTEGER PRIMARY KEY,
    record TEXT NOT NULL,
    attachment TEXT NOT NULL
);
