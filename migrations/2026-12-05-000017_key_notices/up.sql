-- Webhook notices sent once per key and threshold (docs/webhooks.md): key.expiring once
-- per expiry and lead time, quota.low and quota.exhausted once per quota configuration
-- and refill period. `mark` names the threshold; the primary key makes a second sending
-- (two instances scanning at once) a no-op.
CREATE TABLE key_notices (
    key_id uuid NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
    event_type text NOT NULL,
    mark text NOT NULL,
    PRIMARY KEY (key_id, event_type, mark)
);
-- What the scans read: live service keys that expire, and keys with a stored quota balance.
CREATE INDEX keys_expiring_idx ON keys (expires_at)
    WHERE kind = 'service' AND expires_at IS NOT NULL AND revoked_at IS NULL AND rotated_to IS NULL;
CREATE INDEX keys_quota_balance_idx ON keys (quota_balance)
    WHERE kind = 'service' AND quota_balance IS NOT NULL AND revoked_at IS NULL;
