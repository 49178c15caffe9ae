-- Issue 9: the key directory and device approval.
-- Each device's state: approved (chained to its user's identity in the directory), pending
-- (enrolled, waiting for an approved device of its user: it receives nothing), legacy
-- (existed before the directory: listed at the first start after this migration) or revoked.
-- `revoked_at` (V5) stays the revocation's time; a revoked device has both.
ALTER TABLE devices ADD COLUMN state TEXT NOT NULL DEFAULT 'legacy'
    CHECK (state IN ('approved', 'pending', 'legacy', 'revoked'));
-- Unix seconds of the device's latest sync.
ALTER TABLE devices ADD COLUMN last_seen INTEGER;
UPDATE devices SET state = 'revoked' WHERE revoked_at IS NOT NULL;
-- The archiver is bound by the custodians, not by the directory: never listed.
UPDATE devices SET state = 'approved' WHERE state = 'legacy' AND user = 'records';
-- The directory log: each leaf's exact bytes (a vellum_directory::DirectoryEntry as JSON),
-- by index from 0. `user` is '' for the entry closing the upgrade listing.
CREATE TABLE directory_entries (
    idx INTEGER PRIMARY KEY,
    user TEXT NOT NULL,
    body BLOB NOT NULL
);
-- The newest signed checkpoint of the directory, with the witnesses' cosignature lines.
CREATE TABLE directory_checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    note TEXT NOT NULL
);
-- The approval exchange of a pending (or legacy) device, as the server relays it: the new
-- device's commitment (hex), the approver's hello and the new device's offer (JSON), then
-- the identity key sealed to the new device (set in the transaction that approves it).
CREATE TABLE approvals (
    device_id TEXT PRIMARY KEY REFERENCES devices(device_id),
    commitment TEXT,
    hello TEXT,
    offer TEXT,
    sealed_identity BLOB,
    updated_at INTEGER NOT NULL
);
-- How long (seconds) an administrator's reset waits for a veto; NULL: the default (72 h).
ALTER TABLE org_policy ADD COLUMN reset_wait_secs INTEGER;
