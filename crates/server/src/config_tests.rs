//! The configuration's own tests (beside it, so that config.rs stays one screenful of rules).

use super::*;

/// Issue #29: a file that does not parse is reported by line and column, never by
/// quoting the line, which may hold a password or the secret.
#[test]
fn a_file_that_does_not_parse_echoes_no_secret() {
    let dir = std::env::temp_dir().join(format!("keyward-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (text, line) in [
        ("listen = \"127.0.0.1:8080\"\ndatabase_url = \"postgres://u:s3cretpw@h/db\n", 2),
        ("secret = 12\nredis_url = \"redis://:s3cretpw@h\"\n", 1),
        ("metrics_token = [\"s3cretpw\"]\n", 1),
        ("[keys]\nservice_prefix = \"s3cretpw\"\nnope = 1\n", 3),
    ] {
        let path = dir.join("keyward.toml");
        std::fs::write(&path, text).unwrap();
        let shown = Config::file_table(Some(&path)).and_then(Config::from_table).unwrap_err().to_string();
        assert!(!shown.contains("s3cretpw") && !shown.contains("postgres://"), "{shown}");
        assert!(shown.contains(&format!("line {line},")), "{shown}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Found by the `config` fuzz target: 64 bytes with a multi-byte character panicked
/// (slicing inside a character), and the panic message printed the secret.
#[test]
fn a_secret_that_is_not_hex_is_refused_without_a_panic() {
    for secret in
        ["0011223344556677889Ǟabeitddeeff00112233445566778899aabbccddeeff".to_owned(), "é".repeat(32), "+f".repeat(32)]
    {
        assert_eq!(secret.len(), 64);
        let config: Config = toml::from_str(&format!("secret = {secret:?}")).unwrap();
        let refused = config.secret().unwrap_err().to_string();
        assert!(refused.contains("64 hexadecimal digits") && !refused.contains(&secret), "{refused}");
    }
    let config: Config = toml::from_str(&format!("secret = {:?}", "0aF9".repeat(16))).unwrap();
    assert_eq!(config.secret().unwrap().unwrap()[..2], [0x0a, 0xf9]);
}

#[test]
fn a_previous_secret_needs_a_current_one_and_is_checked_like_it() {
    let previous = "ab".repeat(32);
    let alone: Config = toml::from_str(&format!("secret_previous = {previous:?}")).unwrap();
    let refused = alone.at_rest().unwrap_err().to_string();
    assert!(refused.contains("without KEYWARD_SECRET") && !refused.contains(&previous), "{refused}");
    let malformed = format!("{}zz", "ab".repeat(31));
    let both: Config =
        toml::from_str(&format!("secret = {:?}\nsecret_previous = {malformed:?}", "cd".repeat(32))).unwrap();
    let refused = both.at_rest().unwrap_err().to_string();
    assert!(refused.contains("KEYWARD_SECRET_PREVIOUS") && !refused.contains(&malformed), "{refused}");
    let rotated: Config =
        toml::from_str(&format!("secret = {:?}\nsecret_previous = {previous:?}", "cd".repeat(32))).unwrap();
    assert!(rotated.at_rest().unwrap().is_some());
    assert!(Config::default().at_rest().unwrap().is_none());
}

#[test]
fn a_full_file_parses_and_unknown_keys_are_rejected() {
    let config: Config = toml::from_str(
        r#"
        listen = "0.0.0.0:9000"
        public_url = "https://keys.example.com"
        log_format = "json"
        trusted_proxies = ["10.0.0.0/8"]
        [database]
        max_connections = 4
        [keys]
        default_keyspace_prefix = "acme"
        [plans.free]
        max_keys = 5
        audit_retention_days = 7
        account_keys_allowed = false
        default_tier = "free"
        [tiers]
        free = 20
        [webhooks]
        allow_private = true
        key_expiring_days = [30, 3]
        quota_low_percent = 25
        "#,
    )
    .unwrap();
    assert_eq!(config.listen.port(), 9000);
    assert_eq!(config.plans.free.max_keys, Some(5));
    assert_eq!(config.plans.pro.max_keys, Some(10_000), "unset plans keep their defaults");
    assert_eq!(config.tiers.free, 20);
    assert_eq!(config.domain().unwrap().default_keyspace_prefix.as_str(), "acme");
    assert!(config.domain().unwrap().webhooks_allow_private);
    let notices = config.domain().unwrap().webhook_notices;
    assert_eq!(
        (notices.expiring_leads, notices.quota_low_percent),
        (vec![time::Duration::days(30), time::Duration::days(3)], 25)
    );
    let bad: Config = toml::from_str("[webhooks]\nquota_low_percent = 101").unwrap();
    assert!(bad.domain().is_err(), "a percentage past 100 is refused at start");
    assert!(!Config::default().domain().unwrap().webhooks_allow_private, "refused unless allowed");
    assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
}

#[test]
fn debug_output_shows_no_secret_setting() {
    let secret = "ab".repeat(32);
    let config: Config = toml::from_str(&format!(
        r#"
        database_url = "postgres://keyward:db-password-1@db/keyward"
        redis_url = "redis://:redis-password-2@cache:6379"
        secret = "{secret}"
        metrics_token = "scrape-token-3-long-enough"
        "#
    ))
    .unwrap();
    let shown = format!("{config:?}");
    for hidden in ["db-password-1", "redis-password-2", secret.as_str(), "scrape-token-3"] {
        assert!(!shown.contains(hidden), "{hidden} in {shown}");
    }
    assert_eq!(config.database_url(), Some("postgres://keyward:db-password-1@db/keyward"));
    assert!(config.secret().unwrap().is_some(), "still read as the secret it is");
}

#[test]
fn a_metrics_token_must_be_long_and_is_never_shown() {
    let with = |token: &str| Config { metrics_token: token.parse().ok(), ..Config::default() }.metrics_token();
    assert!(Config::default().metrics_token().unwrap().is_none(), "no token: no route");
    assert!(with("short").is_err());
    assert!(with("sixteen chars ok").is_err(), "no spaces: it travels in a header");
    let token = with("a-scrape-token-of-32-characters!").unwrap().unwrap();
    assert!(!format!("{token:?}").contains("scrape"));
}
