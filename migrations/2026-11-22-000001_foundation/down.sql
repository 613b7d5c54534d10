DROP TABLE keys;
DROP TABLE keyspaces;
DROP TABLE accounts;
