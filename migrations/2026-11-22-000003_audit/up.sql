-- The append-only audit trail. Each account's events form a hash chain:
-- hash = BLAKE3(prev_hash || canonical event), in `seq` order (assigned under a per-account
-- advisory lock, so concurrent writers cannot fork a chain). Events without an account
-- (a failed login for an unknown email) form a chain of their own.

CREATE TABLE audit_events (
    id uuid PRIMARY KEY,
    -- No foreign key: the trail outlives what it describes.
    account_id uuid,
    seq bigint NOT NULL,
    ts timestamptz NOT NULL,
    actor text NOT NULL,
    action text NOT NULL,
    resource_type text NOT NULL,
    resource_id text,
    result text NOT NULL CHECK (result IN ('success', 'failure', 'denied')),
    ip text,
    user_agent text,
    request_id text,
    metadata jsonb NOT NULL,
    prev_hash bytea NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash bytea NOT NULL CHECK (octet_length(hash) = 32),
    CONSTRAINT audit_events_chain_key UNIQUE NULLS NOT DISTINCT (account_id, seq)
);

-- GET /v1/audit: an account's events, newest first (ids are time-ordered).
CREATE INDEX audit_events_account_id_idx ON audit_events (account_id, id DESC);

-- Nobody edits history: UPDATE and TRUNCATE always fail, DELETE fails except inside the
-- retention purge (keyward_audit_purge), which sets a transaction-local switch. Superusers
-- are stopped too; one who disables the trigger to alter a row is caught by
-- `keyward audit verify`.
CREATE FUNCTION audit_events_refuse_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('keyward.audit_purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_events_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_changes();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_changes();

-- Roles other than the owner get to read and append, nothing else.
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM PUBLIC;

-- The retention purge: the one removal path.
CREATE FUNCTION keyward_audit_purge(p_account uuid, p_before timestamptz) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    removed bigint;
BEGIN
    PERFORM set_config('keyward.audit_purge', 'on', true);
    DELETE FROM audit_events WHERE account_id IS NOT DISTINCT FROM p_account AND ts < p_before;
    GET DIAGNOSTICS removed = ROW_COUNT;
    PERFORM set_config('keyward.audit_purge', 'off', true);
    RETURN removed;
END
$$;
