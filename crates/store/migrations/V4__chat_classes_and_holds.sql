-- Each chat's class, from the RecordChat extension of its GroupContext: 1 record, 0
-- transitory. Groups stored before V4 have NULL until the server reads their class from
-- their public state at start (vellum_server::classify_groups).
ALTER TABLE groups ADD COLUMN record INTEGER;
-- The users a legal hold in force names as its custodian, as the org's archiver last
-- reported them (PUT /v1/records/held-users).
CREATE TABLE held_users (
    user TEXT PRIMARY KEY
) WITHOUT ROWID;
-- What a hold on a person does to their transitory chats: 0 suspends the timers, 1 makes
-- the chats convert to record chats.
ALTER TABLE org_policy ADD COLUMN hold_converts INTEGER NOT NULL DEFAULT 0;
