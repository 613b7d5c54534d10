-- Trust III (issue #29): every person joins an account by a link sent to their address,
-- never by the address alone. An invitation is addressed to an e-mail, not to a login;
-- only the hash of its link's token is stored; it is used once and expires.
--
-- Pending invitations of the old kind (to a login, accepted by that login alone) are the
-- very hole this closes: they are dropped, and their accounts invite again.
DROP TABLE invitations;

CREATE TABLE invitations (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    email text NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254 AND email = lower(email)),
    role text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    invited_by text NOT NULL,
    token_hash bytea NOT NULL CHECK (octet_length(token_hash) = 32),
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    -- One live offer per address and account: inviting again replaces it.
    CONSTRAINT invitations_account_email_key UNIQUE (account_id, email),
    -- Opening a link looks its invitation up by token hash.
    CONSTRAINT invitations_token_hash_key UNIQUE (token_hash)
);

-- "What waits for this address?" when its login looks.
CREATE INDEX invitations_email_idx ON invitations (email);

-- A login that belongs to no account (yet) may sign in, to see and accept invitations.
ALTER TABLE sessions ALTER COLUMN account_id DROP NOT NULL;
