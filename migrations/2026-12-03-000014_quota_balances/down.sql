ALTER TABLE keys
    DROP CONSTRAINT keys_quota_balance_whole,
    DROP COLUMN quota_balance,
    DROP COLUMN quota_period,
    DROP COLUMN quota_fingerprint;
