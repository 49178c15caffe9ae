-- Every key package ever uploaded, by SHA-256, so an upload (or a replay of one) cannot put
-- the same key package on file twice, even after it was claimed.
CREATE TABLE key_package_hashes (
    hash BLOB PRIMARY KEY
) WITHOUT ROWID;
DELETE FROM key_packages WHERE id NOT IN (
    SELECT MIN(id) FROM key_packages GROUP BY device_id, data
);
