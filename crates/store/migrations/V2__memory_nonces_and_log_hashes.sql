-- Request nonces are kept in memory now (see SqliteStore::remember_nonce): no request
-- writes, let alone fsyncs, to remember one.
DROP TABLE IF EXISTS nonces;

-- What a client needs to notice that the server went back in time: an id created with the
-- database (a restored backup keeps it, a new database does not) and, per group, a running
-- SHA-256 over the log (vellum_wire::log_hash). Entries of 0.1.0 are hashed at open.
CREATE TABLE server_instance (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    instance_id TEXT NOT NULL
);
INSERT INTO server_instance (id, instance_id) VALUES (1, lower(hex(randomblob(16))));
-- the hash after the group's last entry (entries may since have been purged)
ALTER TABLE groups ADD COLUMN log_hash BLOB;
ALTER TABLE group_log ADD COLUMN log_hash BLOB;
