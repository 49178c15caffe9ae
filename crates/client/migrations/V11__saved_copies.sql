-- Issue 12: copies of a downloaded file that another program saves under a name it may
-- change (the app's browser, into its download folder). The shredder removes every file in
-- `dir` that is one of them (by SHA-256, or by the served name and the browser's variants of
-- it) when the message goes, and keeps looking for a while after, for a copy the browser
-- finished writing late.
CREATE TABLE saved_copies (
    id INTEGER PRIMARY KEY,
    dir TEXT NOT NULL,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    group_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    gone_at INTEGER
);
CREATE INDEX saved_copies_by_message ON saved_copies (group_id, message_id);
