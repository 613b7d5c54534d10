-- Leak response (docs/leaks.md): when a key was first reported found in public and where,
-- and what a keyspace does with its leaked keys (NULL: revoke live keys, notify for test).
ALTER TABLE keys
    ADD COLUMN leaked_at timestamptz,
    ADD COLUMN leak_source text,
    ADD CONSTRAINT keys_leak_whole CHECK ((leaked_at IS NULL) = (leak_source IS NULL));
ALTER TABLE keyspaces
    ADD COLUMN leak_policy text,
    ADD CONSTRAINT keyspaces_leak_policy_known CHECK (leak_policy IN ('notify', 'disable', 'revoke'));
