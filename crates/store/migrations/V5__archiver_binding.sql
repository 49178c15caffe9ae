-- Issue 8: one archiver, bound by the custodians.
-- The archiver device is named explicitly (set when the code records init or
-- replace-archiver issued is used), no longer "the first device of user records".
ALTER TABLE records_config ADD COLUMN archiver_device TEXT;
-- The custodians' newest binding (a SignedBinding as JSON) and its serial.
ALTER TABLE records_config ADD COLUMN binding TEXT;
ALTER TABLE records_config ADD COLUMN binding_serial INTEGER;
-- records_config.log_key (the archiver's own say-so about its log key) is no longer read:
-- devices take the log key from the binding. Kept, as every column 0.1.0 wrote is.
-- A replaced archiver's device: it can no longer authenticate or be claimed.
ALTER TABLE devices ADD COLUMN revoked_at INTEGER;
-- An existing deployment keeps its archiver when `records` has exactly one device. With
-- more (a second device, or an ordinary user named records enrolled before records init),
-- none is trusted: the first binding the custodians sign names the archiver.
UPDATE records_config SET archiver_device = (
    SELECT MIN(device_id) FROM devices WHERE user = 'records'
    HAVING COUNT(*) = 1
);
