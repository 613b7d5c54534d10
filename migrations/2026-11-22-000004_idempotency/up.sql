-- Idempotency keys, per account, kept 24 hours. A row without a status is a request still
-- running (its claim lapses at lease_until); with one, the response to replay, its body
-- sealed with XChaCha20-Poly1305 under the server's secret (it may hold a plaintext key).

CREATE TABLE idempotency_keys (
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    key text NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
    fingerprint bytea NOT NULL CHECK (octet_length(fingerprint) = 32),
    created_at timestamptz NOT NULL,
    lease_until timestamptz,
    status smallint,
    body bytea,
    PRIMARY KEY (account_id, key)
);

-- The purge of keys past their 24 hours.
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
