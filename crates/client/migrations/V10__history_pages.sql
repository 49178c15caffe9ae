-- Issue 12: the window pages a chat's history from its newest message back, in the order
-- `history` uses (a message the server has not accepted yet sorts last). Without this index a
-- page of a long chat sorts the whole chat.
CREATE INDEX messages_page ON messages (group_id, COALESCE(seq, 9223372036854775807), sent_at);
