//! The command line: `keyward serve`, `migrate`, `healthcheck`, `config check` and the
//! operator's commands. Every setting is also read from the environment (settings.rs).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use keyward_domain::{AccountId, Plan, people::Role};

use crate::config::{LogFormat, Sensitive};

/// Every setting is also read from the environment (`KEYWARD_*`, `DATABASE_URL`, `REDIS_URL`,
/// and `*_FILE` for secrets): docs/configuration.md. A flag wins over both.
#[derive(Debug, Parser)]
#[command(name = "keyward", version, about = "Self-hostable API key management")]
pub(crate) struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "KEYWARD_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// PostgreSQL URL; without one, `serve` keeps everything in memory.
    #[arg(long, global = true)]
    pub(crate) database_url: Option<Sensitive>,
    /// Redis URL (`redis://…`, or `redis+cluster://host:port,…` for a Redis Cluster); rate
    /// limits and quotas are then shared by every instance.
    #[arg(long, global = true)]
    pub(crate) redis_url: Option<Sensitive>,
    /// PEM file of the certificate authorities a `rediss://` server must chain to (default: the system's).
    #[arg(long, global = true)]
    pub(crate) redis_ca_file: Option<PathBuf>,
    /// GitHub's secret-scanning public keys, as https://api.github.com/meta/public_keys/secret_scanning
    /// serves them (docs/leaks.md); without it, POST /v1/leaks/github answers 404.
    #[arg(long, global = true)]
    pub(crate) github_keys_file: Option<PathBuf>,
    /// Accept GitHub's secret-scanning reports, with its keys fetched (docs/leaks.md).
    #[arg(long, global = true)]
    pub(crate) github_secret_scanning: Option<bool>,
    /// Where GitHub's secret-scanning keys are fetched from (default: GitHub's API).
    #[arg(long, global = true)]
    pub(crate) github_keys_url: Option<String>,
    /// Let webhook URLs reach private, loopback and link-local addresses (default: refused).
    #[arg(long, global = true)]
    pub(crate) webhooks_allow_private: Option<bool>,
    /// 64 hex digits sealing stored idempotent responses and webhook secrets; shared by
    /// every instance.
    #[arg(long, global = true)]
    pub(crate) secret: Option<Sensitive>,
    /// The KEYWARD_SECRET before a rotation: what it sealed still opens, and is sealed again.
    #[arg(long, global = true)]
    pub(crate) secret_previous: Option<Sensitive>,
    /// The mail server: smtp://[user:password@]host[:port] (STARTTLS), smtps://… (TLS), or
    /// smtp://127.0.0.1:port?tls=none for a test sink on this machine.
    #[arg(long, global = true)]
    pub(crate) smtp_url: Option<Sensitive>,
    /// The From: of every mail, e.g. "Keyward <keys@example.com>".
    #[arg(long, global = true)]
    pub(crate) mail_from: Option<String>,
    #[arg(long, global = true)]
    pub(crate) log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve the HTTP API.
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free one).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Base URL clients use (documentation links in errors; https makes the session
        /// cookie `__Host-` and Secure).
        #[arg(long)]
        public_url: Option<String>,
        /// In-memory mode: also write the bootstrap account key to this file (mode 0600).
        #[arg(long)]
        bootstrap_key_file: Option<PathBuf>,
        /// The bearer token a scraper presents to `GET /metrics`; without one the route
        /// does not exist.
        #[arg(long)]
        metrics_token: Option<Sensitive>,
    },
    /// Apply the embedded database migrations.
    Migrate,
    /// Manage accounts.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Manage people.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Ask the configured listen address for `/healthz`: exit 0 when it answers 200, else 1
    /// (the image's HEALTHCHECK: no shell or curl needed).
    Healthcheck {
        /// Another address to ask, e.g. 127.0.0.1:8080.
        #[arg(long)]
        addr: Option<std::net::SocketAddr>,
    },
    /// The configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print the OpenAPI document.
    #[command(hide = true)]
    Openapi,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Read the configuration as `serve` would and check every setting, without starting
    /// or connecting to anything; print it with secrets redacted. Exits 1 if it is invalid.
    Check,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Walk the hash chains and name the first broken link of each; exits 1 if any is broken.
    Verify {
        /// Only this account's chain.
        #[arg(long)]
        account: Option<AccountId>,
        /// A head printed earlier by `keyward audit head` (`<acct_… or none>:<seq>:<hash>`):
        /// the trail must still hold that event unchanged, so deleting the newest events is
        /// caught. Repeatable.
        #[arg(long = "expect-head")]
        expect_head: Vec<keyward_domain::audit::AnchoredHead>,
    },
    /// Print each chain's newest event as `<acct_… or none>:<seq>:<hash>`, to keep outside
    /// the database and check later with `verify --expect-head`.
    Head,
    /// Delete events older than each account's plan retention (`serve` does this hourly).
    Purge,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AccountCommand {
    /// Create an account with its default keyspace and a first account key (printed once),
    /// and optionally its owner (a one-time password is printed unless --password-stdin).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "free", value_parser = parse_plan)]
        plan: Plan,
        /// Create the account's owner with this email.
        #[arg(long)]
        owner_email: Option<String>,
        /// Read the owner's password from standard input instead of generating one.
        #[arg(long, requires = "owner_email")]
        password_stdin: bool,
        /// Also write the account key to this file (mode 0600).
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Add a person to an account (a new user gets a one-time password unless --password-stdin).
    Add {
        #[arg(long)]
        account: AccountId,
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "member", value_parser = parse_role)]
        role: Role,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password (generated and printed once unless --password-stdin).
    SetPassword {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

fn parse_plan(s: &str) -> Result<Plan, String> {
    s.parse().map_err(|e| format!("{e}"))
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse().map_err(|e| format!("{e}"))
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    /// Flags and environment variables holding secrets parse, and `Debug` shows none.
    #[test]
    fn the_command_line_debug_shows_no_secret() {
        let cli = Cli::try_parse_from([
            "keyward",
            "--database-url",
            "postgres://keyward:cli-db-password@db/keyward",
            "--redis-url",
            "redis://:cli-redis-password@cache",
            "serve",
            "--metrics-token",
            "cli-scrape-token-long-enough",
        ])
        .unwrap();
        let shown = format!("{cli:?}");
        for hidden in ["cli-db-password", "cli-redis-password", "cli-scrape-token"] {
            assert!(!shown.contains(hidden), "{hidden} in {shown}");
        }
        assert_eq!(
            cli.database_url.as_ref().map(Sensitive::expose),
            Some("postgres://keyward:cli-db-password@db/keyward")
        );
    }
}
