-- A key's quota balance as the usage flush keeps it: the credits left in refill period
-- `quota_period` of the quota configuration `quota_fingerprint` (crates/domain/src/quota.rs).
-- A ledger with no balance of its own (a restart, Redis data lost or expired, an outage's
-- fallback) starts from here instead of the configured balance.
ALTER TABLE keys
    ADD COLUMN quota_fingerprint bigint,
    ADD COLUMN quota_period bigint,
    ADD COLUMN quota_balance bigint,
    ADD CONSTRAINT keys_quota_balance_whole CHECK (
        (quota_fingerprint IS NULL) = (quota_period IS NULL)
        AND (quota_period IS NULL) = (quota_balance IS NULL)
        AND (quota_balance IS NULL OR quota_balance >= 0)
    );
