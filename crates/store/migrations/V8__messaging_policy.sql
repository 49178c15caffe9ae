-- Issue 10: the org's rules for read receipts and attachments. NULL reads as the default
-- (allowed; 1 GiB per file; 10 GiB per user).
ALTER TABLE org_policy ADD COLUMN allow_read_receipts INTEGER;
ALTER TABLE org_policy ADD COLUMN max_file_bytes INTEGER;
ALTER TABLE org_policy ADD COLUMN user_quota_bytes INTEGER;
ALTER TABLE org_policy ADD COLUMN files_in_transitory INTEGER;
ALTER TABLE org_policy ADD COLUMN files_in_record INTEGER;
