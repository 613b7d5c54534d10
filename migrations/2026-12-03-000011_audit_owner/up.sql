-- The audit trail gets an owner of its own (issue #13). Until now the application's role
-- owned `audit_events` (so it could disable the trigger) and the purge's way out was a
-- session setting any of its sessions could set. Now:
--  * the table and its functions belong to `keyward_audit_owner`, a role nobody logs in as;
--  * the application's role keeps SELECT and INSERT, and EXECUTE on the purge;
--  * a DELETE passes the trigger only with the purge's switch on *and* as the table's
--    owner, which only `keyward_audit_purge` (SECURITY DEFINER) is.
-- A migrating role that may not create roles keeps the old arrangement, with a warning:
-- the trigger then accepts the switch from the owner, as before.

CREATE OR REPLACE FUNCTION audit_events_refuse_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
        AND current_setting('keyward.audit_purge', true) = 'on'
        AND current_user = (SELECT tableowner FROM pg_tables
                            WHERE schemaname = TG_TABLE_SCHEMA AND tablename = TG_TABLE_NAME) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;

-- Per chain, so each DELETE can use the (account_id, …) indexes.
CREATE OR REPLACE FUNCTION keyward_audit_purge(p_account uuid, p_before timestamptz) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    removed bigint;
BEGIN
    PERFORM set_config('keyward.audit_purge', 'on', true);
    IF p_account IS NULL THEN
        DELETE FROM audit_events WHERE account_id IS NULL AND ts < p_before;
    ELSE
        DELETE FROM audit_events WHERE account_id = p_account AND ts < p_before;
    END IF;
    GET DIAGNOSTICS removed = ROW_COUNT;
    PERFORM set_config('keyward.audit_purge', 'off', true);
    RETURN removed;
END
$$;

DO $$
DECLARE
    app name := current_user;
BEGIN
    IF NOT (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = app) THEN
        RAISE WARNING 'keyward: % may not create roles, so audit_events stays owned by it', app;
        RETURN;
    END IF;
    -- Everything or nothing: a privilege missing half-way leaves the old arrangement.
    BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'keyward_audit_owner') THEN
            CREATE ROLE keyward_audit_owner NOLOGIN;
        END IF;
        -- Handing an object to a role takes membership in it (unless superuser), and the
        -- new owner needs CREATE on the schema.
        EXECUTE format('GRANT keyward_audit_owner TO %I', app);
        EXECUTE format('GRANT USAGE, CREATE ON SCHEMA %I TO keyward_audit_owner', current_schema());
        ALTER TABLE audit_events OWNER TO keyward_audit_owner;
        ALTER FUNCTION audit_events_refuse_changes() OWNER TO keyward_audit_owner;
        ALTER FUNCTION keyward_audit_purge(uuid, timestamptz) OWNER TO keyward_audit_owner;
        ALTER FUNCTION keyward_audit_purge(uuid, timestamptz) SECURITY DEFINER SET search_path = public, pg_temp;
        REVOKE ALL ON FUNCTION keyward_audit_purge(uuid, timestamptz) FROM PUBLIC;
        -- Still a member: grants in the owner's name.
        EXECUTE format('GRANT SELECT, INSERT ON audit_events TO %I', app);
        EXECUTE format('GRANT EXECUTE ON FUNCTION keyward_audit_purge(uuid, timestamptz) TO %I', app);
        EXECUTE format('REVOKE keyward_audit_owner FROM %I', app);
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE WARNING 'keyward: % could not hand audit_events to keyward_audit_owner: %', app, SQLERRM;
    END;
END
$$;
