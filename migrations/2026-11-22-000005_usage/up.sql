-- Usage metering, written in batches (never on the verification hot path).
-- Per-request records are partitioned by UTC day: the retention purge drops whole
-- partitions. Daily counts per key outlive the records.

CREATE TABLE usage_records (
    ts timestamptz NOT NULL,
    id bigint GENERATED ALWAYS AS IDENTITY,
    key_id uuid NOT NULL,
    account_id uuid NOT NULL,
    endpoint text,
    method text,
    status_code smallint,
    response_time_ms integer,
    ip text,
    outcome text NOT NULL,
    PRIMARY KEY (ts, id)
) PARTITION BY RANGE (ts);

-- GET /v1/keys/{id}/usage and GET /v1/stats.
CREATE INDEX usage_records_key_ts_idx ON usage_records (key_id, ts DESC);
CREATE INDEX usage_records_account_ts_idx ON usage_records (account_id, ts DESC);

-- Requests per key per UTC day; no foreign key, so a batch never fails on a key deleted
-- meanwhile (its counts are simply never read).
CREATE TABLE key_usage_daily (
    key_id uuid NOT NULL,
    day date NOT NULL,
    requests bigint NOT NULL,
    PRIMARY KEY (key_id, day)
);

-- The partition of one day, created on first use; instances racing to create it are fine.
CREATE FUNCTION keyward_usage_partition(p_day date) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    partition text := 'usage_records_' || to_char(p_day, 'YYYYMMDD');
BEGIN
    IF to_regclass(partition) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF usage_records FOR VALUES FROM (%L) TO (%L)',
                       partition, p_day, p_day + 1);
    END IF;
EXCEPTION WHEN duplicate_table THEN
    NULL;
END
$$;

-- The retention purge: drops the partitions of days before p_day; returns how many.
CREATE FUNCTION keyward_usage_drop_before(p_day date) RETURNS integer LANGUAGE plpgsql AS $$
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
