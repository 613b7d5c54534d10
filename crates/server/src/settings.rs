//! Every setting, where it comes from and what it means: the one list the environment
//! layer reads (`KEYWARD_*`, and `*_FILE` for secrets, the Docker and Kubernetes secrets
//! convention) and `docs/configuration.md` is generated from (a test compares them).
//!
//! Order of precedence: defaults, then the TOML file, then the environment, then flags.

use std::path::Path;

use crate::config::{Config, ConfigError};

/// How an environment variable's text becomes the setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Text,
    Number,
    Bool,
    /// Comma-separated text, or a TOML array.
    TextList,
    /// Comma-separated numbers, or a TOML array.
    NumberList,
    /// A TOML value (an array of tables).
    Toml,
}

/// One setting: its key in the file (dotted), its environment variable, and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Setting {
    pub(crate) key: String,
    pub(crate) env: String,
    pub(crate) kind: Kind,
    /// A secret, or a URL that may hold one: `<env>_FILE` names a file holding it.
    pub(crate) secret: bool,
    pub(crate) about: &'static str,
}

use Kind::*;

/// `(key, kind, secret, about)`; the variable is `KEYWARD_` and the key in capitals, dots
/// as underscores, but for the three names every tool already uses.
const TOP: &[(&str, Kind, bool, &str)] = &[
    ("listen", Text, false, "Address and port to listen on (the image sets `0.0.0.0:8080`)."),
    (
        "public_url",
        Text,
        false,
        "Base URL clients reach Keyward at: documentation links and mailed links; `https` makes the session cookie `__Host-` and Secure. Default: `http://` and the listen address.",
    ),
    ("database_url", Text, true, "PostgreSQL URL; without one, `serve` keeps everything in memory."),
    (
        "redis_url",
        Text,
        true,
        "Redis URL (`redis://`, `rediss://`, or `redis+cluster://host:port,…`): rate limits and quotas shared by every instance; without one, each instance limits alone.",
    ),
    ("redis_timeout_ms", Number, false, "How long a limit decision waits for Redis before deciding in process."),
    (
        "redis_ca_file",
        Text,
        false,
        "PEM file of the authorities a `rediss://` server must chain to (default: the system's).",
    ),
    ("github_keys_file", Text, false, "GitHub's secret-scanning public keys, pinned from a file (docs/leaks.md)."),
    ("github_secret_scanning", Bool, false, "Accept GitHub's secret-scanning reports, with its keys fetched."),
    ("github_keys_url", Text, false, "Where GitHub's secret-scanning keys are fetched from (default: GitHub's API)."),
    (
        "secret",
        Text,
        true,
        "64 hex digits sealing idempotent replays and webhook secrets at rest; every instance shares it. Without it each process makes its own.",
    ),
    ("secret_previous", Text, true, "The `secret` before a rotation: what it sealed still opens and is sealed again."),
    (
        "metrics_token",
        Text,
        true,
        "Bearer token for `GET /metrics` (16+ characters); without one the route does not exist.",
    ),
    (
        "smtp_url",
        Text,
        true,
        "Mail server, with its credentials: `smtp://user:password@host:587` (STARTTLS), `smtps://…` (TLS), or `smtp://127.0.0.1:port?tls=none` for a local sink. Without one, no mail is sent.",
    ),
    ("mail_from", Text, false, "The `From:` of every mail, e.g. `Keyward <keys@example.com>`."),
    (
        "usage_buffer",
        Number,
        false,
        "Usage records held in memory between flushes; past it they are dropped (and counted).",
    ),
    ("usage_retention_days", Number, false, "Days per-request usage records are kept (daily counts stay)."),
    (
        "log_format",
        Text,
        false,
        "`pretty` or `json` (one JSON object per line on standard output; the image's default).",
    ),
    ("workers", Number, false, "HTTP worker threads; 0 is one per CPU core."),
    (
        "shutdown_grace_seconds",
        Number,
        false,
        "Seconds from SIGTERM to exit: requests in flight finish, usage is flushed, outbox tries end.",
    ),
    (
        "shutdown_delay_seconds",
        Number,
        false,
        "Seconds `/readyz` answers 503 after SIGTERM while requests are still served, so that a load balancer stops sending them first (part of the grace).",
    ),
    (
        "bootstrap_file",
        Text,
        false,
        "With PostgreSQL: `keyward migrate` creates a first account and owner when there is none, and writes the login and account key here (mode 0600).",
    ),
    ("trusted_proxies", TextList, false, "Proxies (addresses or CIDR networks) whose `X-Forwarded-For` is believed."),
];

/// `(field, kind, about)` of a section's settings.
type Fields = &'static [(&'static str, Kind, &'static str)];

const SECTIONS: &[(&str, Fields)] = &[
    (
        "database",
        &[
            ("max_connections", Number, "PostgreSQL connections per instance."),
            ("wait_timeout_ms", Number, "How long a request waits for a free connection before a 503."),
            ("statement_timeout_ms", Number, "PostgreSQL's `statement_timeout` on every connection."),
            ("idle_in_transaction_timeout_ms", Number, "PostgreSQL's `idle_in_transaction_session_timeout`."),
        ],
    ),
    (
        "keys",
        &[
            ("default_keyspace_prefix", Text, "Prefix of a new account's default keyspace's keys."),
            ("account_key_prefix", Text, "Prefix of account keys."),
            ("temporary_key_prefix", Text, "Prefix of the dashboard's temporary keys."),
        ],
    ),
    (
        "passwords",
        &[
            ("memory_kib", Number, "argon2id memory per hash (raising it rehashes at the next login)."),
            ("iterations", Number, "argon2id iterations."),
            ("parallelism", Number, "argon2id lanes."),
            ("max_concurrent", Number, "Hashes at once; 0 is half the cores, at least one."),
        ],
    ),
    (
        "cache",
        &[
            ("enabled", Bool, "Cache key records for verification (PostgreSQL)."),
            ("max_entries", Number, "Cached records at most."),
            ("max_megabytes", Number, "Bytes the cached records may hold, in MiB."),
            ("ttl_seconds", Number, "Backstop for a missed invalidation (30 at most)."),
            ("negative_ttl_seconds", Number, "How long an unknown key is remembered as unknown (30 at most)."),
        ],
    ),
    (
        "login",
        &[
            ("failures_per_email", Number, "Failed sign-ins per address per window."),
            ("failure_window_seconds", Number, "That window."),
            ("attempts_per_ip", Number, "Sign-in attempts per client address per window."),
            ("attempt_window_seconds", Number, "That window."),
        ],
    ),
    (
        "webhooks",
        &[
            ("allow_private", Bool, "Let webhook URLs reach private, loopback and link-local addresses."),
            ("key_expiring_days", NumberList, "Days before expiry `key.expiring` is sent, once per lead time."),
            ("quota_low_percent", Number, "A quota at or below this percentage sends `quota.low`."),
        ],
    ),
];

const BUCKETS: &[(&str, &str)] = &[
    ("ip", "Management API requests per client address"),
    ("key", "Management API requests per account key"),
    ("account", "Management API requests per account"),
    ("verify", "Verifications per calling account, per instance"),
];

const PLANS: &[&str] = &["free", "basic", "pro", "enterprise"];

fn env_of(key: &str) -> String {
    match key {
        "database_url" | "redis_url" | "redis_ca_file" => key.to_uppercase(),
        _ => format!("KEYWARD_{}", key.replace('.', "_").to_uppercase()),
    }
}

fn setting(key: String, kind: Kind, secret: bool, about: &'static str) -> Setting {
    Setting { env: env_of(&key), key, kind, secret, about }
}

/// Every setting, in the order the documentation lists them.
pub(crate) fn all() -> Vec<Setting> {
    let mut all: Vec<Setting> =
        TOP.iter().map(|(key, kind, secret, about)| setting((*key).to_owned(), *kind, *secret, about)).collect();
    for (section, fields) in SECTIONS {
        all.extend(
            fields.iter().map(|(field, kind, about)| setting(format!("{section}.{field}"), *kind, false, about)),
        );
    }
    for (bucket, about) in BUCKETS {
        all.push(setting(format!("rate_limits.{bucket}.burst"), Number, false, about));
        all.push(setting(format!("rate_limits.{bucket}.per_second"), Number, false, "… refilled per second."));
    }
    all.push(setting(
        "rate_limits.endpoints".into(),
        Toml,
        false,
        "Hourly sub-limits per account on the riskiest routes: `[{method, path, limit, period_seconds}, …]`.",
    ));
    for (budget, about) in [
        ("imported_keys", "Keys `POST /v1/keys/import` may bring in per account per period."),
        ("leak_reports", "Strings in public leak reports per client address (/64) per period."),
    ] {
        all.push(setting(format!("rate_limits.{budget}.limit"), Number, false, about));
        all.push(setting(format!("rate_limits.{budget}.period_seconds"), Number, false, "… that period."));
    }
    for plan in PLANS {
        all.push(setting(
            format!("plans.{plan}.max_keys"),
            Number,
            false,
            "Keys not revoked at most (unset: no limit).",
        ));
        all.push(setting(format!("plans.{plan}.audit_retention_days"), Number, false, "Days audit events are kept."));
        all.push(setting(
            format!("plans.{plan}.account_keys_allowed"),
            Bool,
            false,
            "Whether account keys may be made.",
        ));
        all.push(setting(format!("plans.{plan}.default_tier"), Text, false, "The tier of a new key."));
    }
    for tier in PLANS {
        all.push(setting(format!("tiers.{tier}"), Number, false, "Requests per minute of a key of this tier."));
    }
    all
}

/// The configuration: defaults, the file at `path`, then the settings `env` gives.
pub(crate) fn load(path: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    // From the defaults up, so that one field of a section (`KEYWARD_PLANS_FREE_MAX_KEYS`)
    // keeps the section's other fields.
    let mut table = toml::Table::try_from(Config::default())
        .map_err(|e| ConfigError::Invalid(format!("the defaults do not serialize: {e}")))?;
    merge(&mut table, Config::file_table(path)?);
    for setting in all() {
        if let Some(text) = read(&setting, env)? {
            let value = parse(&setting, &text)?;
            put(&mut table, &setting.key, value);
        }
    }
    Config::from_table(table)
}

/// The variable's text, or for a secret the text of the file `<env>_FILE` names (one
/// trailing line break taken off, as `echo` and editors leave one). An empty variable is
/// an unset one (what compose's `${VAR:-}` gives).
fn read(setting: &Setting, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, ConfigError> {
    let env = |name: &str| env(name).filter(|text| !text.is_empty());
    let direct = env(&setting.env);
    if !setting.secret {
        return Ok(direct);
    }
    let file_var = format!("{}_FILE", setting.env);
    match (direct, env(&file_var)) {
        (Some(_), Some(_)) => Err(ConfigError::Invalid(format!("set {} or {file_var}, not both", setting.env))),
        (Some(text), None) => Ok(Some(text)),
        (None, None) => Ok(None),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|source| ConfigError::Read { path: format!("{file_var} ({path})"), source })?;
            let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
            Ok(Some(text.to_owned()))
        }
    }
}

/// The value `text` stands for; an error names the variable, never a secret's value.
fn parse(setting: &Setting, text: &str) -> Result<toml::Value, ConfigError> {
    let invalid = |what: &str| ConfigError::Invalid(format!("{} must be {what}", setting.env));
    let list = |number: bool| -> Result<toml::Value, ConfigError> {
        if text.trim_start().starts_with('[') {
            return inline(text).ok_or_else(|| invalid("a TOML array"));
        }
        let items = text.split(',').map(str::trim).filter(|item| !item.is_empty());
        items
            .map(|item| match number {
                true => item.parse::<i64>().map(toml::Value::Integer).map_err(|_| invalid("comma-separated numbers")),
                false => Ok(toml::Value::String(item.to_owned())),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(toml::Value::Array)
    };
    match setting.kind {
        Text => Ok(toml::Value::String(text.to_owned())),
        Number => text.trim().parse::<i64>().map(toml::Value::Integer).map_err(|_| invalid("a whole number")),
        Bool => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(toml::Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(toml::Value::Boolean(false)),
            _ => Err(invalid("true or false")),
        },
        TextList => list(false),
        NumberList => list(true),
        Toml => inline(text).ok_or_else(|| invalid("a TOML value")),
    }
}

fn inline(text: &str) -> Option<toml::Value> {
    let mut table: toml::Table = toml::from_str(&format!("value = {text}")).ok()?;
    table.remove("value")
}

/// `over`'s values in place of `base`'s, table by table.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(value)) => merge(inner, value),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn put(table: &mut toml::Table, key: &str, value: toml::Value) {
    match key.split_once('.') {
        None => {
            table.insert(key.to_owned(), value);
        }
        Some((head, rest)) => {
            let entry = table.entry(head.to_owned()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(inner) = entry {
                put(inner, rest, value);
            }
        }
    }
}

/// The value `key` has in `table`, if any.
fn lookup<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    match key.split_once('.') {
        None => table.get(key),
        Some((head, rest)) => lookup(table.get(head)?.as_table()?, rest),
    }
}

/// The settings `config` has, as `keyward config check` shows them: secrets redacted.
pub(crate) fn effective(config: &Config) -> Vec<(Setting, Option<String>)> {
    let table = toml::Table::try_from(config).unwrap_or_default();
    all()
        .into_iter()
        .map(|s| {
            let value = lookup(&table, &s.key).map(shown);
            (s, value)
        })
        .collect()
}

fn shown(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => format!("`{text}`"),
        other => format!("`{other}`"),
    }
}

/// `docs/configuration.md`, made from this list and the defaults.
#[cfg(test)]
pub(crate) fn document() -> String {
    let mut out = String::from(
        "# Configuration\n\n\
         <!-- Generated from crates/server/src/settings.rs by `KEYWARD_CODEGEN=write cargo test -p keyward settings`; do not edit. -->\n\n\
         Every setting can be given in a TOML file (`--config` / `KEYWARD_CONFIG`, keys as below, \
         dotted keys are `[sections]`) or in the environment; the environment wins over the file, \
         and a flag over both. A setting marked *secret* can also be read from a file named by \
         the variable with `_FILE` appended (`DATABASE_URL_FILE=/run/secrets/database_url`), \
         the Docker and Kubernetes secrets convention; setting both is an error. An empty variable counts as unset. \
         `keyward config check` reads the configuration as `serve` would, checks it, and prints it \
         with secrets redacted, without starting.\n\n\
         Lists are comma-separated in the environment (`KEYWARD_TRUSTED_PROXIES=10.0.0.0/8,192.168.0.0/16`) \
         or TOML arrays; booleans are `true`/`false`.\n\n\
         | Setting | Environment | Default | Meaning |\n|---|---|---|---|\n",
    );
    for (setting, default) in effective(&Config::default()) {
        let env = if setting.secret {
            format!("`{}` (secret; or `{}_FILE`)", setting.env, setting.env)
        } else {
            format!("`{}`", setting.env)
        };
        let default = default.unwrap_or_else(|| "(none)".into()).replace('|', "\\|");
        out.push_str(&format!("| `{}` | {env} | {default} | {} |\n", setting.key, setting.about.replace('|', "\\|")));
    }
    out.push_str(
        "\nRead by the tracing and OpenTelemetry layer (docs/telemetry.md), from the environment only: \
         `KEYWARD_LOG` (a tracing filter, default `info,actix_server=warn,redis=error`), \
         `OTEL_EXPORTER_OTLP_ENDPOINT` (turns on OTLP/HTTP export) and the other standard `OTEL_*` variables.\n",
    );
    out
}

#[cfg(test)]
#[path = "settings_tests.rs"]
mod tests;
