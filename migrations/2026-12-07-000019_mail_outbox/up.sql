-- Trust III (issue #29): mail from a durable outbox, and password resets by mail.

-- A mail is written in the unit of work that calls for it and sent by the worker of any
-- instance: claimed with FOR UPDATE SKIP LOCKED and a lease, retried with backoff.
CREATE TABLE mail_outbox (
    id uuid PRIMARY KEY,
    account_id uuid REFERENCES accounts (id) ON DELETE CASCADE,
    recipient text NOT NULL,
    subject text NOT NULL,
    -- Hold a link's token until sent; emptied then.
    text_body text NOT NULL,
    html_body text NOT NULL,
    created_at timestamptz NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    -- When it is due next; NULL once sent or given up on.
    next_attempt_at timestamptz,
    sent_at timestamptz,
    last_error text
);

-- "What is due?" on every round of every worker.
CREATE INDEX mail_outbox_due_idx ON mail_outbox (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
CREATE INDEX mail_outbox_account_idx ON mail_outbox (account_id) WHERE sent_at IS NULL;

-- A reset's link, stored as its token's hash; one per login (a new one replaces it).
CREATE TABLE password_resets (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash bytea NOT NULL CHECK (octet_length(token_hash) = 32),
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    CONSTRAINT password_resets_token_hash_key UNIQUE (token_hash),
    CONSTRAINT password_resets_user_id_key UNIQUE (user_id)
);
