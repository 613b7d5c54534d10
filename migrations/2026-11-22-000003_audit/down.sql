DROP FUNCTION keyward_audit_purge(uuid, timestamptz);
DROP TABLE audit_events;
DROP FUNCTION audit_events_refuse_changes();
