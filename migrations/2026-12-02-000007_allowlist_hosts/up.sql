-- Host names in IP allowlists (SPEC §2), beside the addresses and networks (`cidr[]`,
-- which cannot hold a name). Expand only: older code ignores the column, and its default
-- keeps rows written by older code valid.
ALTER TABLE keys ADD COLUMN ip_allowlist_hosts text[] NOT NULL DEFAULT '{}';
