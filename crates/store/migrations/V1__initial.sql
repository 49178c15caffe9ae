-- The schema of Vellum 0.1.0, exactly: a 0.1.0 database (no history table) is taken as
-- this version, and IF NOT EXISTS makes running it over one add only what is missing.
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS enrollment_codes (
    code_hash BLOB PRIMARY KEY,
    user TEXT NOT NULL REFERENCES users(name),
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    user TEXT NOT NULL REFERENCES users(name),
    signature_key BLOB NOT NULL UNIQUE,
    enrolled_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS devices_by_user ON devices(user);
CREATE TABLE IF NOT EXISTS nonces (
    device_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    seen_at INTEGER NOT NULL,
    PRIMARY KEY (device_id, nonce)
);
CREATE TABLE IF NOT EXISTS key_packages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL REFERENCES devices(device_id),
    data BLOB NOT NULL,
    last_resort INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS key_packages_by_device ON key_packages(device_id, last_resort);
CREATE TABLE IF NOT EXISTS groups (
    group_id TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL,
    state BLOB NOT NULL,
    expire_secs INTEGER,
    burn_secs INTEGER,
    last_seq INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS group_log (
    group_id TEXT NOT NULL REFERENCES groups(group_id),
    seq INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    kind TEXT NOT NULL,
    sender_device TEXT NOT NULL,
    client_msg_id TEXT,
    payload BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    expires_at INTEGER,
    -- deleted for everyone, kept only until the archiver has it
    deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (group_id, seq),
    UNIQUE (group_id, sender_device, client_msg_id)
);
CREATE TABLE IF NOT EXISTS memberships (
    group_id TEXT NOT NULL REFERENCES groups(group_id),
    device_id TEXT NOT NULL,
    joined_seq INTEGER NOT NULL,
    removed_seq INTEGER,
    acked_seq INTEGER NOT NULL,
    PRIMARY KEY (group_id, device_id)
);
CREATE INDEX IF NOT EXISTS memberships_by_device ON memberships(device_id);
CREATE TABLE IF NOT EXISTS welcome_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS welcome_queue_by_device ON welcome_queue(device_id, id);
CREATE INDEX IF NOT EXISTS group_log_expiry ON group_log(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS group_log_received ON group_log(received_at);
CREATE TABLE IF NOT EXISTS org_policy (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    max_expire_secs INTEGER,
    max_burn_secs INTEGER,
    allow_no_expiry INTEGER NOT NULL,
    default_record INTEGER NOT NULL DEFAULT 0,
    allow_transitory INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS records_config (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    records_public TEXT NOT NULL,
    log_key TEXT
);
CREATE TABLE IF NOT EXISTS receipt_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    receipt TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS receipt_queue_by_device ON receipt_queue(device_id, id);
