-- The device profile of Vellum 0.1.0, exactly: a 0.1.0 profile (no history table) is taken
-- as this version, and IF NOT EXISTS makes running it over one add only what is missing.
CREATE TABLE IF NOT EXISTS profile (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS mls_groups (group_id BLOB PRIMARY KEY, state BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS mls_epochs (
    group_id BLOB NOT NULL, epoch_id INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (group_id, epoch_id)
);
CREATE TABLE IF NOT EXISTS mls_key_packages (id BLOB PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS chats (
    group_id TEXT PRIMARY KEY,
    title TEXT,
    last_seq INTEGER NOT NULL DEFAULT 0,
    removed INTEGER NOT NULL DEFAULT 0,
    joined_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    group_id TEXT NOT NULL REFERENCES chats(group_id),
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    sender_user TEXT NOT NULL,
    sender_device TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    seq INTEGER,
    -- the text, sealed under this message's own key in message_keys
    body BLOB NOT NULL,
    expires_at INTEGER,
    burn_secs INTEGER,
    read_at INTEGER,
    burn_at INTEGER,
    -- the archive leaf of this message, once a verified receipt came back
    archived_leaf INTEGER,
    PRIMARY KEY (group_id, id)
);
CREATE INDEX IF NOT EXISTS messages_in_order ON messages(group_id, sent_at, seq);
CREATE INDEX IF NOT EXISTS messages_expiry ON messages(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_burn ON messages(burn_at) WHERE burn_at IS NOT NULL;
-- Messages deleted for everyone before they arrived here: a later copy is never shown.
CREATE TABLE IF NOT EXISTS tombstones (
    group_id TEXT NOT NULL,
    id TEXT NOT NULL,
    sender_user TEXT NOT NULL,
    PRIMARY KEY (group_id, id)
);
-- Destroying a row here destroys its message (crypto-shredding), wherever a copy lingers.
CREATE TABLE IF NOT EXISTS message_keys (
    group_id TEXT NOT NULL,
    id TEXT NOT NULL,
    key BLOB NOT NULL,
    PRIMARY KEY (group_id, id)
);
