-- The route rules a keyspace gives gateways (issue #31, docs/gateways.md): the table as
-- written (the API's JSON), checked by the domain before it is stored. A keyspace without
-- a row has the default table: any valid key of it passes.
CREATE TABLE keyspace_routes (
    keyspace_id uuid PRIMARY KEY REFERENCES keyspaces (id) ON DELETE CASCADE,
    routes jsonb NOT NULL CHECK (jsonb_typeof(routes) = 'object'),
    updated_at timestamptz NOT NULL
);
