-- Issue 8: what the server keeps to notice a silent, forked or rolled-back archiver.
-- After how long (seconds) a missing receipt or a checkpoint not renewed or not witnessed is
-- an alarm; NULL: the default (10 minutes).
ALTER TABLE org_policy ADD COLUMN receipt_alarm_secs INTEGER;
-- The archiver's checkpoints as the server accepted them, each consistent with the one
-- before (`proof`: hex hashes, comma-separated, from `previous_size`).
CREATE TABLE records_checkpoints (
    size INTEGER PRIMARY KEY,
    note TEXT NOT NULL,
    previous_size INTEGER NOT NULL,
    proof TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    renewed_at INTEGER NOT NULL,
    witnessed_at INTEGER
);
-- When the archiver's verified receipt for an entry arrived. Entries from before this
-- version count as receipted: receipts were not tracked then.
ALTER TABLE group_log ADD COLUMN receipted_at INTEGER;
UPDATE group_log SET receipted_at = received_at;
CREATE INDEX group_log_unreceipted ON group_log(received_at)
    WHERE receipted_at IS NULL AND kind = 'application';
