-- Signed leak reports already processed (issue #29): the SHA-256 of each body. GitHub's
-- reports carry no timestamp; a replayed one is answered and changes nothing. A row is a
-- few dozen bytes and reports are signed by GitHub, so they are kept.
CREATE TABLE processed_reports (
    digest bytea PRIMARY KEY CHECK (length(digest) = 32),
    processed_at timestamptz NOT NULL
);
