-- The foundation: accounts, keyspaces and keys.
-- Ids are UUIDv7 (time-ordered), so "ORDER BY id" is creation order and inserts stay at the
-- right edge of every B-tree. Keys store only a hash: one tag byte (1 = BLAKE3, 2 = SHA-256)
-- followed by the 32-byte digest.

CREATE TABLE accounts (
    id uuid PRIMARY KEY,
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    plan text NOT NULL CHECK (plan IN ('free', 'basic', 'pro', 'enterprise')),
    created_at timestamptz NOT NULL
);

CREATE TABLE keyspaces (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    prefix text NOT NULL CHECK (prefix ~ '^[a-z0-9_]{2,20}$'),
    default_tier text NOT NULL CHECK (default_tier IN ('free', 'basic', 'pro', 'enterprise')),
    default_scopes text[] NOT NULL,
    allowed_scopes text[],
    ip_policy text NOT NULL CHECK (ip_policy IN ('open', 'allowlist_required')),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CONSTRAINT keyspaces_account_name_key UNIQUE (account_id, name)
);

CREATE TABLE keys (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    keyspace_id uuid REFERENCES keyspaces (id),
    kind text NOT NULL CHECK (kind IN ('account', 'service', 'temporary')),
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    description text CHECK (char_length(description) <= 1000),
    environment text NOT NULL CHECK (environment IN ('live', 'test')),
    key_prefix text NOT NULL,
    hash bytea NOT NULL CHECK (octet_length(hash) = 33),
    scopes text[] NOT NULL,
    resource text,
    tier text NOT NULL CHECK (tier IN ('free', 'basic', 'pro', 'enterprise')),
    rate_limits jsonb NOT NULL,
    quota jsonb,
    ip_allowlist cidr[] NOT NULL,
    expires_at timestamptz,
    idle_timeout_seconds integer CHECK (idle_timeout_seconds > 0),
    owner_id text,
    metadata jsonb NOT NULL,
    is_active boolean NOT NULL,
    revoked_at timestamptz,
    rotated_from uuid,
    rotated_to uuid,
    last_used_at timestamptz,
    usage_count bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL,
    created_by text NOT NULL,
    updated_at timestamptz NOT NULL,
    -- Verification looks keys up by hash: a unique B-tree makes it O(log n).
    CONSTRAINT keys_hash_key UNIQUE (hash)
);

-- Listing an account's keys of one kind, newest first, and counting them.
CREATE INDEX keys_account_kind_id_idx ON keys (account_id, kind, id DESC);
-- Deleting a keyspace checks its keys; listing can filter by keyspace.
CREATE INDEX keys_keyspace_id_idx ON keys (keyspace_id, id DESC);
