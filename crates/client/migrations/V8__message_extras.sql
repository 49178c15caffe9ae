-- Issue 10: a text message's reply, mentions, attachments and edit time
-- (`vellum_client::MessageExtra` as JSON), sealed under the row's own key like its text, so
-- it is shredded with it. NULL when there is nothing beyond the text, and for rows from before.
ALTER TABLE messages ADD COLUMN extra_json BLOB;
-- Reactions and edits are rows of their own (kinds 'reaction' and 'edit', their typed event
-- in event_json) naming the message they are about: shredded with it, and shown once by sync
-- or watch like any other row. A message keeps only its newest text (edits re-seal `body`).
ALTER TABLE messages ADD COLUMN target TEXT;
CREATE INDEX messages_by_target ON messages (group_id, target) WHERE target IS NOT NULL;
-- Read receipts: the newest position each member user said it has read up to (batched
-- `read_up_to` markers, never one per message), and what this device last said per chat.
CREATE TABLE read_markers (
    group_id TEXT NOT NULL,
    user TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (group_id, user)
);
CREATE TABLE read_sent (
    group_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    sent_at INTEGER NOT NULL
);
-- Delivery state: each member device's acknowledged position, as the server last said.
CREATE TABLE delivery (
    group_id TEXT NOT NULL,
    user TEXT NOT NULL,
    device_id TEXT NOT NULL,
    acked_seq INTEGER NOT NULL,
    PRIMARY KEY (group_id, device_id)
);
