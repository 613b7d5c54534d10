use std::collections::HashMap;

use super::*;

fn leaves(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (key, value) in table {
        let key = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match value {
            toml::Value::Table(inner) => leaves(inner, &key, out),
            _ => out.push(key),
        }
    }
}

fn env_from(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    move |name| map.get(name).cloned()
}

/// A field added to the configuration without a line here fails: the documentation and
/// the environment would not know it.
#[test]
fn every_setting_of_the_configuration_is_listed() {
    let defaults = toml::Table::try_from(Config::default()).unwrap();
    let mut found = Vec::new();
    leaves(&defaults, "", &mut found);
    let listed: Vec<String> = all().into_iter().map(|s| s.key).collect();
    for key in &found {
        assert!(listed.contains(key), "{key} is a setting nobody listed in settings.rs");
    }
    // And what is listed exists (a setting with no default is an Option): a typo would be
    // refused as an unknown field.
    for setting in all() {
        let sample = match setting.kind {
            Kind::Number => "1",
            Kind::Bool => "true",
            Kind::TextList | Kind::NumberList | Kind::Toml => "[]",
            Kind::Text => "x",
        };
        let env = env_from(&[(setting.env.as_str(), sample)]);
        if let Err(error) = load(None, &env) {
            assert!(!error.to_string().contains("unknown field"), "{}: {error}", setting.key);
        }
    }
}

#[test]
fn each_setting_is_read_as_the_type_its_default_has() {
    let defaults = toml::Table::try_from(Config::default()).unwrap();
    for setting in all() {
        let Some(value) = lookup(&defaults, &setting.key) else { continue };
        let fits = match setting.kind {
            Kind::Number => value.is_integer(),
            Kind::Bool => value.is_bool(),
            Kind::Text => value.is_str(),
            Kind::TextList | Kind::NumberList | Kind::Toml => value.is_array(),
        };
        assert!(fits, "{} is {:?} but its default is {value}", setting.key, setting.kind);
    }
}

#[test]
fn environment_names_are_unique_and_keep_the_names_tools_use() {
    let mut names = Vec::new();
    for setting in all() {
        if setting.secret {
            names.push(format!("{}_FILE", setting.env));
        }
        names.push(setting.env);
    }
    let count = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), count, "two settings share a variable");
    for name in ["DATABASE_URL", "REDIS_URL", "KEYWARD_SECRET_FILE", "KEYWARD_WEBHOOKS_ALLOW_PRIVATE", "KEYWARD_LISTEN"]
    {
        assert!(names.iter().any(|n| n == name), "{name}");
    }
}

#[test]
fn the_environment_wins_over_the_file_and_is_typed() {
    let dir = std::env::temp_dir().join(format!("keyward-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("keyward.toml");
    std::fs::write(&file, "workers = 3\nusage_buffer = 7\n[database]\nmax_connections = 4\n").unwrap();
    let env = env_from(&[
        ("KEYWARD_WORKERS", "5"),
        ("KEYWARD_DATABASE_MAX_CONNECTIONS", " 9 "),
        ("KEYWARD_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1"),
        ("KEYWARD_WEBHOOKS_KEY_EXPIRING_DAYS", "30,3"),
        ("KEYWARD_WEBHOOKS_ALLOW_PRIVATE", "true"),
        ("KEYWARD_PLANS_FREE_MAX_KEYS", "12"),
        ("KEYWARD_RATE_LIMITS_IP_BURST", "77"),
        ("KEYWARD_LOG_FORMAT", "json"),
    ]);
    let config = load(Some(&file), &env).unwrap();
    assert_eq!((config.workers, config.usage_buffer, config.database.max_connections), (5, 7, 9));
    assert_eq!(config.trusted_proxies, ["10.0.0.0/8", "192.168.1.1"]);
    assert_eq!(config.webhooks.key_expiring_days, [30, 3]);
    assert!(config.webhooks.allow_private);
    assert_eq!(config.plans.free.max_keys, Some(12));
    assert_eq!(config.plans.pro.max_keys, Some(10_000), "the rest of the plan keeps its default");
    assert_eq!(config.rate_limits.ip.burst, 77);
    assert_eq!(config.log_format, crate::config::LogFormat::Json);
    let empty = load(None, &env_from(&[("KEYWARD_SMTP_URL", ""), ("KEYWARD_MAIL_FROM", ""), ("KEYWARD_WORKERS", "")]));
    let empty = empty.unwrap();
    assert!(empty.smtp_url.is_none() && empty.mail_from.is_none() && empty.workers == 0, "empty is unset");
    let refused = load(None, &env_from(&[("KEYWARD_WORKERS", "many")])).unwrap_err().to_string();
    assert!(refused.contains("KEYWARD_WORKERS must be a whole number"), "{refused}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue #30: `*_FILE` reads a secret from a file (a Docker or Kubernetes secret); an error
/// names the variable and the file, never what the file holds.
#[test]
fn a_secret_is_read_from_the_file_its_file_variable_names() {
    let dir = std::env::temp_dir().join(format!("keyward-secret-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = "ab".repeat(32);
    let (secret_file, url_file) = (dir.join("secret"), dir.join("database_url"));
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    std::fs::write(&url_file, "postgres://keyward:file-db-password@db/keyward").unwrap();
    let (secret_path, url_path) = (secret_file.display().to_string(), url_file.display().to_string());
    let env = env_from(&[("KEYWARD_SECRET_FILE", &secret_path), ("DATABASE_URL_FILE", &url_path)]);
    let config = load(None, &env).unwrap();
    assert_eq!(config.secret().unwrap(), Some([0xab; 32]), "the trailing line break is not part of it");
    assert_eq!(config.database_url(), Some("postgres://keyward:file-db-password@db/keyward"));

    let both = env_from(&[("KEYWARD_SECRET_FILE", &secret_path), ("KEYWARD_SECRET", &secret)]);
    let refused = load(None, &both).unwrap_err().to_string();
    assert!(refused.contains("KEYWARD_SECRET or KEYWARD_SECRET_FILE") && !refused.contains(&secret), "{refused}");

    let missing = env_from(&[("REDIS_URL_FILE", "/nonexistent/redis_url")]);
    let refused = load(None, &missing).unwrap_err().to_string();
    assert!(refused.contains("REDIS_URL_FILE") && refused.contains("/nonexistent/redis_url"), "{refused}");

    std::fs::write(&secret_file, "not hex: file-secret-value").unwrap();
    let refused = load(None, &env).and_then(|c| c.secret()).unwrap_err().to_string();
    assert!(!refused.contains("file-secret-value"), "{refused}");
    assert!(
        load(None, &env_from(&[("KEYWARD_LISTEN_FILE", &url_path)])).unwrap().listen.port() == 8080,
        "only secrets have _FILE"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn what_config_check_prints_shows_no_secret() {
    let env = env_from(&[
        ("DATABASE_URL", "postgres://keyward:shown-db-password@db/keyward"),
        ("KEYWARD_SMTP_URL", "smtp://mailer:shown-smtp-password@mail:587"),
        ("KEYWARD_METRICS_TOKEN", "shown-scrape-token-long"),
    ]);
    let shown = format!("{:?}", effective(&load(None, &env).unwrap()));
    for hidden in ["shown-db-password", "shown-smtp-password", "shown-scrape-token"] {
        assert!(!shown.contains(hidden), "{hidden} in {shown}");
    }
    assert!(shown.contains("(redacted)"));
}

/// `docs/configuration.md` is this list; `KEYWARD_CODEGEN=write` rewrites it.
#[test]
fn the_configuration_document_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
    let made = document();
    if std::env::var("KEYWARD_CODEGEN").as_deref() == Ok("write") {
        std::fs::write(path, &made).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == made,
        "docs/configuration.md is stale: run KEYWARD_CODEGEN=write cargo test -p keyward settings"
    );
}
