-- Set while the server says a member of this (transitory) chat is under a legal hold: the
-- shredder leaves its messages alone until the hold is released.
ALTER TABLE chats ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
