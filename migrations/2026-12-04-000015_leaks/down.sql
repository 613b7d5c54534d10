ALTER TABLE keyspaces
    DROP CONSTRAINT keyspaces_leak_policy_known,
    DROP COLUMN leak_policy;
ALTER TABLE keys
    DROP CONSTRAINT keys_leak_whole,
    DROP COLUMN leak_source,
    DROP COLUMN leaked_at;
