-- Finding the message at a log position (a restored server may hand one out twice).
CREATE INDEX messages_by_seq ON messages(group_id, seq) WHERE seq IS NOT NULL;
