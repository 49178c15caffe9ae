-- Issue 8: receipts that bind content.
-- The salt of a message's content commitments, sealed under the message's own key (like its
-- text): shredding the key also destroys what could confirm a guess of the text.
ALTER TABLE messages ADD COLUMN salt BLOB;
-- The archive's verified receipt for one of this device's messages, kept with the binding it
-- verified under, for `vellum receipts`; shredded with its message.
CREATE TABLE receipts (
    group_id TEXT NOT NULL,
    id TEXT NOT NULL,
    leaf_index INTEGER NOT NULL,
    receipt TEXT NOT NULL,
    binding TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (group_id, id)
);
