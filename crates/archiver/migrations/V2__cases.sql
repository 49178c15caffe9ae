-- FOIA cases (issue 11). Each case is one JSON document sealed with AES-256-GCM under a key
-- derived from the records key (so it opens only while the archive is unsealed); only its
-- id and timestamps are in clear.
CREATE TABLE IF NOT EXISTS cases (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    -- 12-byte nonce, then the ciphertext and tag; the case id is the associated data.
    sealed BLOB NOT NULL
);
