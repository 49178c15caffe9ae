-- Issue 9: every event (and every message from others) is shown once by `sync` or `watch`,
-- whichever command processed it: a membership change found while sending, or while another
-- command caught up, waits here until the next sync shows it. Rows from before are shown.
ALTER TABLE messages ADD COLUMN shown INTEGER NOT NULL DEFAULT 1;
CREATE INDEX messages_unshown ON messages (shown) WHERE shown = 0;
