ALTER TABLE keys DROP COLUMN ip_allowlist_hosts;
