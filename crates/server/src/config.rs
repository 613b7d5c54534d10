//! Configuration: defaults, then a TOML file (`--config` / `KEYWARD_CONFIG`), then
//! environment variables and flags (`KEYWARD_*`, `DATABASE_URL`), each overriding the last.

use std::{net::SocketAddr, path::Path, time::Duration};

use keyward_domain::{
    PlanTable, TierTable, key_format::KeyPrefix, key_service::DomainConfig, password::HashParams, throttle::LoginLimits,
};
use serde::{Deserialize, Serialize};

/// A setting that is a secret or may hold one (a URL's password): read like any string,
/// never shown by `Debug`, so a configuration logged whole shows no secret.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub(crate) struct Sensitive(String);

impl Sensitive {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

/// How `keyward config check` and the settings' documentation show it: never the value.
impl Serialize for Sensitive {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("(redacted)")
    }
}

impl std::fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sensitive(redacted)")
    }
}

/// How clap reads it from a flag or an environment variable.
impl std::str::FromStr for Sensitive {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_owned()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    #[default]
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct DatabaseSettings {
    pub(crate) max_connections: usize,
    pub(crate) wait_timeout_ms: u64,
    pub(crate) statement_timeout_ms: u64,
    pub(crate) idle_in_transaction_timeout_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        let pool = keyward_store_pg::PoolConfig::default();
        Self {
            max_connections: pool.max_size,
            wait_timeout_ms: pool.wait_timeout.as_millis() as u64,
            statement_timeout_ms: pool.statement_timeout.as_millis() as u64,
            idle_in_transaction_timeout_ms: pool.idle_in_transaction_timeout.as_millis() as u64,
        }
    }
}

impl DatabaseSettings {
    pub(crate) fn pool_config(&self) -> keyward_store_pg::PoolConfig {
        keyward_store_pg::PoolConfig {
            max_size: self.max_connections,
            wait_timeout: Duration::from_millis(self.wait_timeout_ms),
            statement_timeout: Duration::from_millis(self.statement_timeout_ms),
            idle_in_transaction_timeout: Duration::from_millis(self.idle_in_transaction_timeout_ms),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct KeySettings {
    pub(crate) default_keyspace_prefix: String,
    pub(crate) account_key_prefix: String,
    pub(crate) temporary_key_prefix: String,
}

impl Default for KeySettings {
    fn default() -> Self {
        Self {
            default_keyspace_prefix: "kw".into(),
            account_key_prefix: "kw_acct".into(),
            temporary_key_prefix: "kw_tmp".into(),
        }
    }
}

/// The verification cache of key records (PostgreSQL only; memory needs none). The TTL is
/// the backstop for a missed invalidation and is capped at 30 seconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct CacheSettings {
    pub(crate) enabled: bool,
    pub(crate) max_entries: u64,
    /// The bytes the cached records may hold, in MiB (about 1 KiB per ordinary key).
    pub(crate) max_megabytes: u64,
    pub(crate) ttl_seconds: u64,
    pub(crate) negative_ttl_seconds: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        let config = keyward_store_pg::CacheConfig::default();
        Self {
            enabled: true,
            max_entries: config.max_entries,
            max_megabytes: config.max_bytes >> 20,
            ttl_seconds: config.ttl.as_secs(),
            negative_ttl_seconds: config.negative_ttl.as_secs(),
        }
    }
}

impl CacheSettings {
    pub(crate) fn config(&self) -> keyward_store_pg::CacheConfig {
        keyward_store_pg::CacheConfig {
            max_entries: self.max_entries,
            max_bytes: self.max_megabytes.saturating_mul(1 << 20),
            ttl: Duration::from_secs(self.ttl_seconds.min(30)),
            negative_ttl: Duration::from_secs(self.negative_ttl_seconds.min(30)),
        }
    }
}

/// Password hashing: argon2id parameters (OWASP minimum by default; raising them rehashes
/// each password at its next login) and how many hashes may run at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct PasswordSettings {
    pub(crate) memory_kib: u32,
    pub(crate) iterations: u32,
    pub(crate) parallelism: u32,
    /// 0 means half the CPU cores, at least one.
    pub(crate) max_concurrent: usize,
}

impl Default for PasswordSettings {
    fn default() -> Self {
        let params = HashParams::default();
        Self {
            memory_kib: params.memory_kib,
            iterations: params.iterations,
            parallelism: params.parallelism,
            max_concurrent: 0,
        }
    }
}

impl PasswordSettings {
    pub(crate) fn params(&self) -> HashParams {
        HashParams { memory_kib: self.memory_kib, iterations: self.iterations, parallelism: self.parallelism }
    }

    /// Hashes at once: `max_concurrent`, or by default half the cores (at least one), so a
    /// login flood can take at most half the machine and verification keeps the rest.
    pub(crate) fn concurrency(&self) -> usize {
        if self.max_concurrent > 0 {
            self.max_concurrent
        } else {
            default_hash_concurrency(std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get))
        }
    }
}

fn default_hash_concurrency(cores: usize) -> usize {
    (cores / 2).max(1)
}

#[cfg(test)]
mod hashing_tests {
    #[test]
    fn password_hashing_leaves_verification_half_the_cores_by_default() {
        let bound = super::default_hash_concurrency;
        assert_eq!([bound(1), bound(2), bound(3), bound(8)], [1, 1, 1, 4]);
    }
}

/// The whole configuration file. Every field is optional.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Config {
    pub(crate) listen: SocketAddr,
    /// Base URL clients reach Keyward at; used in `documentation_url`.
    pub(crate) public_url: Option<String>,
    /// PostgreSQL; when absent, `serve` keeps everything in memory.
    pub(crate) database_url: Option<Sensitive>,
    /// Redis, for rate limits and quotas shared by every instance; when absent, each
    /// instance limits on its own.
    pub(crate) redis_url: Option<Sensitive>,
    /// How long a rate-limit decision waits for Redis before deciding in process.
    pub(crate) redis_timeout_ms: u64,
    /// PEM file of the certificate authorities a `rediss://` server's certificate must chain
    /// to (`REDIS_CA_FILE`); without it, the system's.
    pub(crate) redis_ca_file: Option<std::path::PathBuf>,
    /// GitHub's secret-scanning public keys, in the JSON of
    /// `https://api.github.com/meta/public_keys/secret_scanning` (`KEYWARD_GITHUB_KEYS_FILE`);
    /// without it, GitHub's reports are refused.
    pub(crate) github_keys_file: Option<std::path::PathBuf>,
    /// Accept GitHub's reports, checked with keys fetched from `github_keys_url`
    /// (`KEYWARD_GITHUB_SECRET_SCANNING`); a `github_keys_file` pins them instead.
    pub(crate) github_secret_scanning: bool,
    /// Where those keys are fetched (`KEYWARD_GITHUB_KEYS_URL`); GitHub's by default.
    pub(crate) github_keys_url: Option<String>,
    /// 64 hex digits (32 bytes) sealing the responses kept for idempotent replay
    /// (`KEYWARD_SECRET`). Instances behind one load balancer must share it; without it,
    /// each process makes its own and replays do not survive a restart.
    pub(crate) secret: Option<Sensitive>,
    /// The `KEYWARD_SECRET` before a rotation (`KEYWARD_SECRET_PREVIOUS`): webhook secrets
    /// it sealed still open, and `serve` seals them again under the current one.
    pub(crate) secret_previous: Option<Sensitive>,
    /// The bearer token a scraper presents to `GET /metrics` (`KEYWARD_METRICS_TOKEN`);
    /// without one the route does not exist.
    pub(crate) metrics_token: Option<Sensitive>,
    /// The mail server (`KEYWARD_SMTP_URL`: `smtp://` with STARTTLS, `smtps://`, or
    /// `smtp://…?tls=none` for a loopback test sink); without one, invitations' links are
    /// handed over by whoever invites and no reset mail is sent.
    pub(crate) smtp_url: Option<Sensitive>,
    /// The `From:` of every mail (`KEYWARD_MAIL_FROM`), e.g. `Keyward <keys@example.com>`.
    pub(crate) mail_from: Option<String>,
    /// Usage records buffered in memory between flushes; past it they are dropped (counted).
    pub(crate) usage_buffer: usize,
    /// Days per-request usage records are kept (daily counts stay).
    pub(crate) usage_retention_days: u32,
    /// Limits of the HTTP API (`[rate_limits]`: `ip`, `key`, `account`, `verify`, `endpoints`).
    pub(crate) rate_limits: keyward_http::ApiLimits,
    pub(crate) log_format: LogFormat,
    /// HTTP worker threads; 0 means one per CPU core.
    pub(crate) workers: usize,
    /// Seconds from SIGTERM to exit: requests in flight finish, usage is flushed, the
    /// workers' tries end (docs/deploy.md).
    pub(crate) shutdown_grace_seconds: u64,
    /// Seconds `/readyz` answers 503 after SIGTERM while requests are still taken, so that a
    /// load balancer stops sending them before the listener closes.
    pub(crate) shutdown_delay_seconds: u64,
    /// With PostgreSQL: `keyward migrate` creates a first account with an owner when there
    /// is none, and writes its login and account key to this file (mode 0600).
    pub(crate) bootstrap_file: Option<std::path::PathBuf>,
    /// Proxies (addresses or CIDR networks) whose `X-Forwarded-For` is believed.
    pub(crate) trusted_proxies: Vec<String>,
    pub(crate) database: DatabaseSettings,
    pub(crate) keys: KeySettings,
    pub(crate) passwords: PasswordSettings,
    pub(crate) cache: CacheSettings,
    pub(crate) login: LoginLimits,
    pub(crate) plans: PlanTable,
    pub(crate) tiers: TierTable,
    pub(crate) webhooks: WebhookSettings,
}

/// `[webhooks]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct WebhookSettings {
    /// Whether webhook URLs may reach private, loopback and link-local addresses
    /// (`KEYWARD_WEBHOOKS_ALLOW_PRIVATE`). Off: such URLs are refused, and so is any
    /// name that resolves only to such addresses when a delivery is made (SSRF).
    pub(crate) allow_private: bool,
    /// How many days before its expiry `key.expiring` is sent, once per lead time.
    pub(crate) key_expiring_days: Vec<u16>,
    /// A quota at or below this percentage of its configured amount sends `quota.low`.
    pub(crate) quota_low_percent: u8,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self { allow_private: false, key_expiring_days: vec![7, 1], quota_low_percent: 10 }
    }
}

impl WebhookSettings {
    fn notices(&self) -> Result<keyward_domain::webhook::notices::NoticeSettings, ConfigError> {
        if self.quota_low_percent > 100 || self.key_expiring_days.iter().any(|d| *d == 0 || *d > 366) {
            return Err(ConfigError::Invalid(
                "webhooks.quota_low_percent must be 0 to 100, webhooks.key_expiring_days 1 to 366 each".into(),
            ));
        }
        Ok(keyward_domain::webhook::notices::NoticeSettings {
            expiring_leads: self.key_expiring_days.iter().map(|d| time::Duration::days(i64::from(*d))).collect(),
            quota_low_percent: self.quota_low_percent,
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            database_url: None,
            redis_url: None,
            redis_timeout_ms: 250,
            redis_ca_file: None,
            github_keys_file: None,
            github_secret_scanning: false,
            github_keys_url: None,
            secret: None,
            secret_previous: None,
            metrics_token: None,
            smtp_url: None,
            mail_from: None,
            usage_buffer: 100_000,
            usage_retention_days: 30,
            rate_limits: keyward_http::ApiLimits::default(),
            log_format: LogFormat::default(),
            workers: 0,
            shutdown_grace_seconds: 10,
            shutdown_delay_seconds: 0,
            bootstrap_file: None,
            trusted_proxies: Vec::new(),
            database: DatabaseSettings::default(),
            keys: KeySettings::default(),
            passwords: PasswordSettings::default(),
            cache: CacheSettings::default(),
            login: LoginLimits::default(),
            plans: PlanTable::default(),
            tiers: TierTable::default(),
            webhooks: WebhookSettings::default(),
        }
    }
}

/// A parse error of the file `path` holding `text`, as a line, a column and a message with
/// every quoted value taken out (serde quotes the string it did not expect).
fn parse_error(path: String, text: &str, error: &toml::de::Error) -> ConfigError {
    let at = error.span().map_or(0, |span| span.start.min(text.len()));
    let before = text.get(..at).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    ConfigError::Parse { path, line, column, message: without_quotes(error.message()) }
}

/// serde's message with every quoted value taken out (it quotes the string it did not expect).
fn without_quotes(message: &str) -> String {
    let mut out = String::new();
    for (i, part) in message.trim().split(['"', '`']).enumerate() {
        out.push_str(if i % 2 == 1 { "[value]" } else { part });
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    /// Where the file went wrong and why, without the file's text: toml's own rendering
    /// quotes the offending line, which may hold a password or the secret.
    #[error("invalid configuration in {path}, line {line}, column {column}: {message}")]
    Parse { path: String, line: usize, column: usize, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// The file's settings as a table, checked whole first (so that a mistake in it is
    /// reported by line and column); no file is an empty table.
    pub(crate) fn file_table(path: Option<&Path>) -> Result<toml::Table, ConfigError> {
        let Some(path) = path else { return Ok(toml::Table::new()) };
        let display = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: display.clone(), source })?;
        toml::from_str::<Self>(&text).map_err(|error| parse_error(display.clone(), &text, &error))?;
        toml::from_str(&text).map_err(|error| parse_error(display, &text, &error))
    }

    /// The configuration a table (the file's, with the environment's settings over it) makes.
    pub(crate) fn from_table(table: toml::Table) -> Result<Self, ConfigError> {
        Self::deserialize(table).map_err(|error| ConfigError::Invalid(without_quotes(&error.to_string())))
    }

    pub(crate) fn database_url(&self) -> Option<&str> {
        self.database_url.as_ref().map(Sensitive::expose)
    }

    pub(crate) fn redis_url(&self) -> Option<&str> {
        self.redis_url.as_ref().map(Sensitive::expose)
    }

    /// The mailer's settings, checked now: a bad URL stops the start with an error that
    /// shows no password. `None`: no mailer.
    pub(crate) fn smtp(&self) -> Result<Option<keyward_mail::SmtpSettings>, ConfigError> {
        let Some(url) = &self.smtp_url else { return Ok(None) };
        keyward_mail::SmtpSettings::parse(url.expose(), self.mail_from.as_deref())
            .map(Some)
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    pub(crate) fn public_url(&self) -> String {
        self.public_url_at(self.listen)
    }

    /// The public URL, or the address Keyward listens on (`bound`: with the port the
    /// system chose when the configured one is 0).
    pub(crate) fn public_url_at(&self, bound: std::net::SocketAddr) -> String {
        self.public_url.clone().unwrap_or_else(|| format!("http://{bound}"))
    }

    pub(crate) fn domain(&self) -> Result<DomainConfig, ConfigError> {
        let prefix = |name: &str, value: &str| {
            KeyPrefix::new(value).map_err(|e| ConfigError::Invalid(format!("keys.{name} = {value:?}: {e}")))
        };
        Ok(DomainConfig {
            plans: self.plans.clone(),
            tiers: self.tiers,
            default_keyspace_prefix: prefix("default_keyspace_prefix", &self.keys.default_keyspace_prefix)?,
            account_key_prefix: prefix("account_key_prefix", &self.keys.account_key_prefix)?,
            temporary_key_prefix: prefix("temporary_key_prefix", &self.keys.temporary_key_prefix)?,
            legacy_pepper: self.secret()?.map(|secret| keyward_domain::key_format::LegacyPepper::from_secret(&secret)),
            legacy_misses: keyward_domain::legacy::LegacyMissLimits::default(),
            webhooks_allow_private: self.webhooks.allow_private,
            webhook_notices: self.webhooks.notices()?,
        })
    }

    /// At least 16 characters: a scrape token is guessed like any password.
    pub(crate) fn metrics_token(&self) -> Result<Option<keyward_http::metrics::MetricsToken>, ConfigError> {
        match self.metrics_token.as_ref().map(Sensitive::expose) {
            None => Ok(None),
            Some(token) if token.chars().count() < 16 || token.chars().any(char::is_whitespace) => {
                Err(ConfigError::Invalid(
                    "metrics_token (KEYWARD_METRICS_TOKEN) must be 16 or more characters, no spaces".into(),
                ))
            }
            Some(token) => Ok(Some(keyward_http::metrics::MetricsToken::new(token))),
        }
    }

    pub(crate) fn secret(&self) -> Result<Option<[u8; 32]>, ConfigError> {
        secret_of(self.secret.as_ref(), "secret (KEYWARD_SECRET)")
    }

    /// What seals secrets at rest: keys derived from `KEYWARD_SECRET` (and the previous one
    /// after a rotation); none without a secret.
    pub(crate) fn at_rest(&self) -> Result<Option<keyward_domain::at_rest::AtRest>, ConfigError> {
        let previous = secret_of(self.secret_previous.as_ref(), "secret_previous (KEYWARD_SECRET_PREVIOUS)")?;
        match self.secret()? {
            Some(secret) => Ok(Some(keyward_domain::at_rest::AtRest::new(&secret, previous.as_ref()))),
            None if previous.is_some() => Err(ConfigError::Invalid(
                "secret_previous (KEYWARD_SECRET_PREVIOUS) is set without KEYWARD_SECRET".into(),
            )),
            None => Ok(None),
        }
    }
}

/// 64 hexadecimal digits as 32 bytes; the error names `what`, never the value.
fn secret_of(secret: Option<&Sensitive>, what: &str) -> Result<Option<[u8; 32]>, ConfigError> {
    let Some(text) = secret.map(Sensitive::expose) else { return Ok(None) };
    let invalid = || ConfigError::Invalid(format!("{what} must be 64 hexadecimal digits"));
    // Bytes, never string slices: a multi-byte character must be refused, not sliced
    // through (a panic whose message would print the secret).
    let digits = text.as_bytes();
    if digits.len() != 64 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(invalid());
    }
    let value = |digit: u8| (digit as char).to_digit(16).map_or(0, |d| d as u8);
    let mut secret = [0u8; 32];
    for (byte, pair) in secret.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = value(pair[0]) << 4 | value(pair[1]);
    }
    Ok(Some(secret))
}

impl Config {
    pub(crate) fn trusted_proxies(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        self.trusted_proxies
            .iter()
            .map(|p| {
                p.parse::<ipnet::IpNet>().or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from)).map_err(
                    |_| ConfigError::Invalid(format!("trusted_proxies: {p:?} is not an address or CIDR network")),
                )
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
