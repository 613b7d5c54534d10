DELETE FROM usage_records WHERE outcome IS NULL;
ALTER TABLE usage_records ALTER COLUMN outcome SET NOT NULL;
