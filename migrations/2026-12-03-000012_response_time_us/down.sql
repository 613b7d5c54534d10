UPDATE account_usage_daily SET total_us = total_us / 1000 WHERE total_us <> 0;
ALTER TABLE account_usage_daily RENAME COLUMN total_us TO total_ms;

UPDATE usage_records SET response_time_us = response_time_us / 1000 WHERE response_time_us IS NOT NULL;
ALTER TABLE usage_records RENAME COLUMN response_time_us TO response_time_ms;
