-- Cheaper usage records: one index per record instead of three, and GET /v1/stats from a
-- daily roll-up instead of a scan of every record an account has.
--
-- Writing the per-request records was most of what PostgreSQL spent per verification
-- (docs/performance.md): a heap row plus three index entries (the primary key on (ts, id),
-- (key_id, ts) and (account_id, ts)). GET /v1/keys/{id}/usage needs (key_id, ts, id) only;
-- GET /v1/stats read the account index, and at ten thousand verifications a second it would
-- have counted hundreds of millions of rows per call.

-- Verification outcomes per account, UTC day and verdict, added to by every usage flush.
CREATE TABLE account_usage_daily (
    account_id uuid NOT NULL,
    day date NOT NULL,
    outcome text NOT NULL,
    requests bigint NOT NULL,
    -- Of those, how many carry a response time, and their sum (for the average).
    timed bigint NOT NULL,
    total_ms bigint NOT NULL,
    PRIMARY KEY (account_id, day, outcome)
);

INSERT INTO account_usage_daily (account_id, day, outcome, requests, timed, total_ms)
SELECT account_id, (ts AT TIME ZONE 'UTC')::date, outcome, count(*), count(response_time_ms),
       coalesce(sum(response_time_ms), 0)
FROM usage_records WHERE outcome IS NOT NULL
GROUP BY 1, 2, 3;

-- The one index a record needs: the key's records, newest first, in cursor order.
ALTER TABLE usage_records DROP CONSTRAINT usage_records_pkey;
DROP INDEX usage_records_key_ts_idx;
DROP INDEX usage_records_account_ts_idx;
ALTER TABLE usage_records ADD PRIMARY KEY (key_id, ts, id);

-- Record ids only break ties between records of one microsecond; each connection may take
-- them a thousand at a time instead of touching the sequence for every row.
ALTER TABLE usage_records ALTER COLUMN id SET CACHE 1000;

-- Every flush adds to the day's row of each key it counted; `requests` is not indexed, so
-- with room on the page the update is HOT (as for `keys`, migration 000008).
ALTER TABLE key_usage_daily SET (fillfactor = 70);

-- The retention purge drops the roll-up's days with their records, so GET /v1/stats keeps
-- counting what is still kept.
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
    DELETE FROM account_usage_daily WHERE day < p_day;
    RETURN dropped;
END
$$;
