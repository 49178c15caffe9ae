-- Where this device last saw each chat's log on the server (seq, running log hash after it,
-- server database id), to notice a server restored from a backup or showing a fork.
ALTER TABLE chats ADD COLUMN log_seq INTEGER;
ALTER TABLE chats ADD COLUMN log_hash BLOB;
ALTER TABLE chats ADD COLUMN log_instance TEXT;
