-- The records office's accounts (issue 11). Secrets are kept only as hashes, except the
-- second factor's shared secret, which TOTP needs (the file is 0600).
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('keyholder', 'officer', 'analyst', 'auditor')),
    -- Argon2id PHC string; NULL until the person completes setup.
    password_hash TEXT,
    -- RFC 6238 shared secret, base32; NULL until setup.
    totp_secret TEXT,
    -- The last TOTP time step accepted: a code is never accepted twice.
    totp_last_step INTEGER NOT NULL DEFAULT 0,
    -- SHA-256 of the account's API token (for the CLI), if it has one.
    api_token_hash BLOB UNIQUE,
    -- SHA-256 of the one-time setup code, until it is used.
    setup_hash BLOB UNIQUE,
    setup_expires_at INTEGER,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);

-- Console sessions: only the hash of the cookie's value is kept.
CREATE TABLE IF NOT EXISTS sessions (
    token_hash BLOB PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts(name),
    csrf_token TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
