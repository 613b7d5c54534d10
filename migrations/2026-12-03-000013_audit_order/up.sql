-- GET /v1/audit lists newest first by (ts, id), the SPEC's order and cursor (issue #15).
-- Ids are UUIDv7, time-ordered to the millisecond only: by id alone, events of one
-- millisecond came in the order of their random bits.
CREATE INDEX audit_events_account_ts_idx ON audit_events (account_id, ts DESC, id DESC);
DROP INDEX audit_events_account_id_idx;
