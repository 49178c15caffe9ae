-- Issue 13: the org's public key, set by the first node that starts on this database. Every
-- node must sign device certificates with the same org key, so a node started with another
-- DATA/org.key is refused instead of splitting the org in two.
ALTER TABLE server_instance ADD COLUMN org_public BYTEA;
