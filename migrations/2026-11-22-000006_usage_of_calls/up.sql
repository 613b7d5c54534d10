-- Management calls made with account keys are metered too; they have a status code but no
-- verification verdict. (A new migration rather than an edit of 000005: databases migrated
-- before this change must get it as well.)
ALTER TABLE usage_records ALTER COLUMN outcome DROP NOT NULL;
