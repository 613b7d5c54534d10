DROP FUNCTION keyward_usage_drop_before(date);
DROP FUNCTION keyward_usage_partition(date);
DROP TABLE key_usage_daily;
DROP TABLE usage_records;
