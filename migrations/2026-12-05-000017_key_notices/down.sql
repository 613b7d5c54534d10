DROP INDEX keys_quota_balance_idx;
DROP INDEX keys_expiring_idx;
DROP TABLE key_notices;
