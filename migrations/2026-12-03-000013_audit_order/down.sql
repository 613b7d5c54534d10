CREATE INDEX audit_events_account_id_idx ON audit_events (account_id, id DESC);
DROP INDEX audit_events_account_ts_idx;
