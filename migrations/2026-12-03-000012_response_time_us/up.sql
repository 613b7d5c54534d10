-- Response times in microseconds (issue #15). A verification takes tens of microseconds,
-- so in milliseconds every one was 0 — and verifications carried no time at all, which
-- left GET /v1/stats answering `avg_response_time_ms: null` after millions of them.
-- Only management calls were timed until now, so few rows are touched.
ALTER TABLE usage_records RENAME COLUMN response_time_ms TO response_time_us;
UPDATE usage_records SET response_time_us = response_time_us * 1000 WHERE response_time_us IS NOT NULL;

ALTER TABLE account_usage_daily RENAME COLUMN total_ms TO total_us;
UPDATE account_usage_daily SET total_us = total_us * 1000 WHERE total_us <> 0;
