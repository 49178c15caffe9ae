-- The schema of SQLite's migrations V1-V9 as one PostgreSQL migration. Integers are BIGINT
-- and flags 0/1 as in SQLite, so the statements stay close to SqliteStore's.
CREATE TABLE users (
    name TEXT COLLATE "C" PRIMARY KEY,
    created_at BIGINT NOT NULL
);
CREATE TABLE enrollment_codes (
    code_hash BYTEA PRIMARY KEY,
    "user" TEXT COLLATE "C" NOT NULL REFERENCES users(name),
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE TABLE devices (
    device_id TEXT COLLATE "C" PRIMARY KEY,
    "user" TEXT COLLATE "C" NOT NULL REFERENCES users(name),
    signature_key BYTEA NOT NULL UNIQUE,
    enrolled_at BIGINT NOT NULL,
    revoked_at BIGINT,
    state TEXT COLLATE "C" NOT NULL DEFAULT 'legacy'
        CHECK (state IN ('approved', 'pending', 'legacy', 'revoked')),
    last_seen BIGINT
);
CREATE INDEX devices_by_user ON devices("user");
CREATE TABLE key_packages (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id TEXT COLLATE "C" NOT NULL REFERENCES devices(device_id),
    data BYTEA NOT NULL,
    last_resort BIGINT NOT NULL
);
CREATE INDEX key_packages_by_device ON key_packages(device_id, last_resort);
CREATE TABLE key_package_hashes (
    hash BYTEA PRIMARY KEY
);
CREATE TABLE groups (
    group_id TEXT COLLATE "C" PRIMARY KEY,
    epoch BIGINT NOT NULL,
    state BYTEA NOT NULL,
    expire_secs BIGINT,
    burn_secs BIGINT,
    last_seq BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    log_hash BYTEA,
    record BIGINT
);
CREATE TABLE group_log (
    group_id TEXT COLLATE "C" NOT NULL REFERENCES groups(group_id),
    seq BIGINT NOT NULL,
    epoch BIGINT NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    sender_device TEXT COLLATE "C" NOT NULL,
    client_msg_id TEXT COLLATE "C",
    payload BYTEA NOT NULL,
    received_at BIGINT NOT NULL,
    expires_at BIGINT,
    deleted BIGINT NOT NULL DEFAULT 0,
    log_hash BYTEA,
    receipted_at BIGINT,
    PRIMARY KEY (group_id, seq),
    UNIQUE (group_id, sender_device, client_msg_id)
);
CREATE INDEX group_log_expiry ON group_log(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX group_log_received ON group_log(received_at);
CREATE INDEX group_log_unreceipted ON group_log(received_at)
    WHERE receipted_at IS NULL AND kind = 'application';
CREATE TABLE memberships (
    group_id TEXT COLLATE "C" NOT NULL REFERENCES groups(group_id),
    device_id TEXT COLLATE "C" NOT NULL,
    joined_seq BIGINT NOT NULL,
    removed_seq BIGINT,
    acked_seq BIGINT NOT NULL,
    PRIMARY KEY (group_id, device_id)
);
CREATE INDEX memberships_by_device ON memberships(device_id);
CREATE TABLE welcome_queue (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id TEXT COLLATE "C" NOT NULL,
    group_id TEXT COLLATE "C" NOT NULL,
    payload BYTEA NOT NULL
);
CREATE INDEX welcome_queue_by_device ON welcome_queue(device_id, id);
CREATE TABLE org_policy (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    max_expire_secs BIGINT,
    max_burn_secs BIGINT,
    allow_no_expiry BIGINT NOT NULL,
    default_record BIGINT NOT NULL DEFAULT 0,
    allow_transitory BIGINT NOT NULL DEFAULT 1,
    hold_converts BIGINT NOT NULL DEFAULT 0,
    receipt_alarm_secs BIGINT,
    reset_wait_secs BIGINT,
    allow_read_receipts BIGINT,
    max_file_bytes BIGINT,
    user_quota_bytes BIGINT,
    files_in_transitory BIGINT,
    files_in_record BIGINT
);
CREATE TABLE records_config (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    records_public TEXT COLLATE "C" NOT NULL,
    log_key TEXT COLLATE "C",
    archiver_device TEXT COLLATE "C",
    binding TEXT COLLATE "C",
    binding_serial BIGINT
);
CREATE TABLE receipt_queue (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id TEXT COLLATE "C" NOT NULL,
    receipt TEXT COLLATE "C" NOT NULL
);
CREATE INDEX receipt_queue_by_device ON receipt_queue(device_id, id);
CREATE TABLE server_instance (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    instance_id TEXT COLLATE "C" NOT NULL
);
INSERT INTO server_instance (id, instance_id)
    VALUES (1, replace(gen_random_uuid()::text, '-', ''));
CREATE TABLE held_users (
    "user" TEXT COLLATE "C" PRIMARY KEY
);
CREATE TABLE records_checkpoints (
    size BIGINT PRIMARY KEY,
    note TEXT COLLATE "C" NOT NULL,
    previous_size BIGINT NOT NULL,
    proof TEXT COLLATE "C" NOT NULL,
    received_at BIGINT NOT NULL,
    renewed_at BIGINT NOT NULL,
    witnessed_at BIGINT
);
CREATE TABLE directory_entries (
    idx BIGINT PRIMARY KEY,
    "user" TEXT COLLATE "C" NOT NULL,
    body BYTEA NOT NULL
);
CREATE TABLE directory_checkpoint (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    note TEXT COLLATE "C" NOT NULL
);
CREATE TABLE approvals (
    device_id TEXT COLLATE "C" PRIMARY KEY REFERENCES devices(device_id),
    commitment TEXT COLLATE "C",
    hello TEXT COLLATE "C",
    offer TEXT COLLATE "C",
    sealed_identity BYTEA,
    updated_at BIGINT NOT NULL
);
CREATE TABLE blobs (
    blob_id TEXT COLLATE "C" PRIMARY KEY,
    group_id TEXT COLLATE "C" NOT NULL,
    uploader_device TEXT COLLATE "C" NOT NULL,
    uploader_user TEXT COLLATE "C" NOT NULL,
    size BIGINT NOT NULL,
    chunk_size BIGINT NOT NULL,
    chunks BIGINT NOT NULL,
    record BIGINT NOT NULL,
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    finished BIGINT NOT NULL DEFAULT 0,
    archived BIGINT NOT NULL DEFAULT 0,
    deleted BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX blobs_by_user ON blobs (uploader_user);
CREATE INDEX blobs_by_expiry ON blobs (expires_at);
CREATE TABLE blob_chunks (
    blob_id TEXT COLLATE "C" NOT NULL,
    idx BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (blob_id, idx)
);
