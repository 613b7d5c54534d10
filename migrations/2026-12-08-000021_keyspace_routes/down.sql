DROP TABLE keyspace_routes;
