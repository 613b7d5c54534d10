-- Webhooks (docs/webhooks.md): an account's endpoints, the outbox's messages, one delivery
-- per message and subscribed endpoint, and every attempt at one.
CREATE TABLE webhook_endpoints (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    url text NOT NULL,
    description text,
    -- Wire names; empty: every event.
    event_types text[] NOT NULL DEFAULT '{}',
    -- NULL: enabled; 'by_user' or 'failing'.
    disabled text CHECK (disabled IN ('by_user', 'failing')),
    -- The signing secret: it must be presented to sign, so it is kept, not hashed.
    secret bytea NOT NULL,
    previous_secret bytea,
    previous_secret_until timestamptz,
    failing_since timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CONSTRAINT webhook_endpoints_previous_whole CHECK ((previous_secret IS NULL) = (previous_secret_until IS NULL))
);
CREATE INDEX webhook_endpoints_account ON webhook_endpoints (account_id, id);

CREATE TABLE webhook_messages (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    event_type text NOT NULL,
    payload text NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE webhook_deliveries (
    message_id uuid NOT NULL REFERENCES webhook_messages (id) ON DELETE CASCADE,
    endpoint_id uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    account_id uuid NOT NULL,
    state text NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    PRIMARY KEY (message_id, endpoint_id)
);
-- What the workers poll: due pending deliveries, the earliest first.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id);

CREATE TABLE webhook_attempts (
    id uuid PRIMARY KEY,
    endpoint_id uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    message_id uuid NOT NULL REFERENCES webhook_messages (id) ON DELETE CASCADE,
    event_type text NOT NULL,
    at timestamptz NOT NULL,
    status integer,
    latency_ms integer NOT NULL,
    response text NOT NULL,
    succeeded boolean NOT NULL
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id DESC);
CREATE INDEX webhook_attempts_message ON webhook_attempts (message_id);
