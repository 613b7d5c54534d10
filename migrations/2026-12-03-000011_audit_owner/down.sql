-- Back to the application's role owning the trail (needs a superuser when the owner role
-- was created).
DO $$
DECLARE
    app name := current_user;
BEGIN
    IF EXISTS (SELECT FROM pg_tables WHERE tablename = 'audit_events' AND tableowner = 'keyward_audit_owner') THEN
        EXECUTE format('GRANT keyward_audit_owner TO %I', app);
        EXECUTE format('ALTER TABLE audit_events OWNER TO %I', app);
        EXECUTE format('ALTER FUNCTION audit_events_refuse_changes() OWNER TO %I', app);
        EXECUTE format('ALTER FUNCTION keyward_audit_purge(uuid, timestamptz) OWNER TO %I', app);
        ALTER FUNCTION keyward_audit_purge(uuid, timestamptz) SECURITY INVOKER;
        EXECUTE format('REVOKE keyward_audit_owner FROM %I', app);
    END IF;
END
$$;
