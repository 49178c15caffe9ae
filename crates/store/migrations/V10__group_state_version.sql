-- Issue 13: a counter bumped with every write of a group's tracked state (commits and leave
-- proposals). Appends compare-and-set it, so a node computing from a stale copy of the state
-- (another node appended a leave in the same epoch) is refused instead of overwriting it.
ALTER TABLE groups ADD COLUMN state_version INTEGER NOT NULL DEFAULT 0;
