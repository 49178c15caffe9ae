-- Issue 13: the delivery server's nodes (sharing one database), in the order this device
-- tries them. A profile from before holds the one URL it enrolled with (profile key
-- `server`, left as it was written and no longer read): it becomes a list of one.
CREATE TABLE servers (position INTEGER PRIMARY KEY, url TEXT NOT NULL UNIQUE);
INSERT INTO servers (position, url)
    SELECT 0, CAST(value AS TEXT) FROM profile WHERE key = 'server';
