-- People, hardened (issue #13): a password someone else chose must be changed at first
-- login, and adding a person who already has an account needs their consent.

-- Set when an admin's `POST /v1/account/users` generated the password; cleared when the
-- user changes it. A login with such a password gets a session that may only change it.
ALTER TABLE users ADD COLUMN password_change_required boolean NOT NULL DEFAULT false;
ALTER TABLE sessions ADD COLUMN password_change_required boolean NOT NULL DEFAULT false;

-- An offer of membership to an existing user, which only that user can accept (while
-- logged in) or decline. Until then the inviting account has no access to anything of
-- theirs, and they none to the account.
CREATE TABLE invitations (
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    invited_by text NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (account_id, user_id)
);

-- "Which invitations wait for this user?" when they look.
CREATE INDEX invitations_user_id_idx ON invitations (user_id);
