ALTER TABLE key_usage_daily RESET (fillfactor);
CREATE OR REPLACE FUNCTION keyward_usage_drop_before(p_day date) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    part record;
    dropped integer := 0;
BEGIN
    FOR part IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'usage_records'::regclass
          AND c.relname < 'usage_records_' || to_char(p_day, 'YYYYMMDD')
    LOOP
        EXECUTE format('DROP TABLE %I', part.relname);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END
$$;
ALTER TABLE usage_records ALTER COLUMN id SET CACHE 1;
ALTER TABLE usage_records DROP CONSTRAINT usage_records_pkey;
ALTER TABLE usage_records ADD PRIMARY KEY (ts, id);
CREATE INDEX usage_records_key_ts_idx ON usage_records (key_id, ts DESC);
CREATE INDEX usage_records_account_ts_idx ON usage_records (account_id, ts DESC);
DROP TABLE account_usage_daily;
