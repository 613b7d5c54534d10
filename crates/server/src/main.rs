//! `keyward`: the binary. Parses the command line and configuration, wires a store into the
//! HTTP application, and runs it. No business logic lives here.

mod background;
mod config;
mod files;
mod github;
mod postgres;
mod telemetry;

use std::{
    io::{BufRead as _, Write as _},
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
};

use actix_web::{HttpServer, web};
use clap::{Parser, Subcommand};
use config::{Config, LogFormat, Sensitive};
use keyward_domain::{
    AccountId, OsRandom, Plan, Store, SystemClock,
    key_service::KeyService,
    password::Password,
    people::{Email, Role},
};
use keyward_http::{AppState, HttpSettings, Policies, TrustedProxies, audit::RequestAuditSink};
use keyward_ratelimit::Limits;
use keyward_runtime::password::BlockingPasswordHasher;
use keyward_store_mem::MemStore;
use keyward_telemetry::Telemetry;
use postgres::pg_state;

#[derive(Debug, Parser)]
#[command(name = "keyward", version, about = "Self-hostable API key management")]
struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "KEYWARD_CONFIG")]
    config: Option<PathBuf>,
    /// PostgreSQL URL; without one, `serve` keeps everything in memory.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<Sensitive>,
    /// Redis URL (`redis://…`, or `redis+cluster://host:port,…` for a Redis Cluster); rate
    /// limits and quotas are then shared by every instance.
    #[arg(long, global = true, env = "REDIS_URL", hide_env_values = true)]
    redis_url: Option<Sensitive>,
    /// PEM file of the certificate authorities a `rediss://` server must chain to (default: the system's).
    #[arg(long, global = true, env = "REDIS_CA_FILE")]
    redis_ca_file: Option<PathBuf>,
    /// GitHub's secret-scanning public keys, as https://api.github.com/meta/public_keys/secret_scanning
    /// serves them (docs/leaks.md); without it, POST /v1/leaks/github answers 404.
    #[arg(long, global = true, env = "KEYWARD_GITHUB_KEYS_FILE")]
    github_keys_file: Option<PathBuf>,
    /// Accept GitHub's secret-scanning reports, with its keys fetched (docs/leaks.md).
    #[arg(long, global = true, env = "KEYWARD_GITHUB_SECRET_SCANNING")]
    github_secret_scanning: Option<bool>,
    /// Where GitHub's secret-scanning keys are fetched from (default: GitHub's API).
    #[arg(long, global = true, env = "KEYWARD_GITHUB_KEYS_URL")]
    github_keys_url: Option<String>,
    /// Let webhook URLs reach private, loopback and link-local addresses (default: refused).
    #[arg(long, global = true, env = "KEYWARD_WEBHOOKS_ALLOW_PRIVATE")]
    webhooks_allow_private: Option<bool>,
    /// 64 hex digits sealing stored idempotent responses and webhook secrets; shared by
    /// every instance.
    #[arg(long, global = true, env = "KEYWARD_SECRET", hide_env_values = true)]
    secret: Option<Sensitive>,
    /// The KEYWARD_SECRET before a rotation: what it sealed still opens, and is sealed again.
    #[arg(long, global = true, env = "KEYWARD_SECRET_PREVIOUS", hide_env_values = true)]
    secret_previous: Option<Sensitive>,
    /// The mail server: smtp://[user:password@]host[:port] (STARTTLS), smtps://… (TLS), or
    /// smtp://127.0.0.1:port?tls=none for a test sink on this machine.
    #[arg(long, global = true, env = "KEYWARD_SMTP_URL", hide_env_values = true)]
    smtp_url: Option<Sensitive>,
    /// The From: of every mail, e.g. "Keyward <keys@example.com>".
    #[arg(long, global = true, env = "KEYWARD_MAIL_FROM")]
    mail_from: Option<String>,
    #[arg(long, global = true, env = "KEYWARD_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free one).
        #[arg(long, env = "KEYWARD_LISTEN")]
        listen: Option<std::net::SocketAddr>,
        /// Base URL clients use (documentation links in errors; https makes the session
        /// cookie `__Host-` and Secure).
        #[arg(long, env = "KEYWARD_PUBLIC_URL")]
        public_url: Option<String>,
        /// In-memory mode: also write the bootstrap account key to this file (mode 0600).
        #[arg(long)]
        bootstrap_key_file: Option<PathBuf>,
        /// The bearer token a scraper presents to `GET /metrics`; without one the route
        /// does not exist.
        #[arg(long, env = "KEYWARD_METRICS_TOKEN", hide_env_values = true)]
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
    /// Print the OpenAPI document.
    #[command(hide = true)]
    Openapi,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
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
enum AccountCommand {
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
enum UserCommand {
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

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("a database is required: set DATABASE_URL or --database-url")]
    NoDatabase,
    #[error("{0}")]
    Other(String),
}

fn other(context: &str) -> impl FnOnce(&dyn std::fmt::Display) -> CliError + '_ {
    move |e| CliError::Other(format!("{context}: {e}"))
}

/// Prints what the operator must see once (a new key, a one-time password) on standard
/// output, never in the log.
fn print_once(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

fn password_from_stdin() -> Result<Password, CliError> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::Other(format!("cannot read the password: {e}")))?;
    let line = line.trim_end_matches(['\r', '\n']).to_owned();
    Password::new(line).map_err(|e| CliError::Other(format!("the password {e}")))
}

fn parse_email(value: &str) -> Result<Email, CliError> {
    Email::new(value).map_err(|e| CliError::Other(format!("--email {e}")))
}

fn state<S: Store>(store: S, config: &Config, telemetry: &Telemetry) -> Result<AppState<S, Limits>, CliError> {
    // Host names in IP allowlists resolve through the system resolver, cached briefly.
    let resolver = Arc::new(keyward_resolver::SystemResolver::new(keyward_resolver::ResolverConfig::default()));
    let service = KeyService::new(store, Arc::new(SystemClock), Arc::new(OsRandom), Arc::new(config.domain()?))
        .with_resolver(resolver);
    let hasher = BlockingPasswordHasher::new(config.passwords.params(), config.passwords.concurrency())
        .map_err(|e| CliError::Other(format!("invalid password hashing settings: {e}")))?;
    let limits = match config.redis_url() {
        Some(url) => {
            let mut options =
                keyward_ratelimit::redis::Options::new(std::time::Duration::from_millis(config.redis_timeout_ms));
            if let Some(path) = &config.redis_ca_file {
                let pem = std::fs::read(path)
                    .map_err(|e| CliError::Other(format!("REDIS_CA_FILE {}: {e}", path.display())))?;
                options.ca_pem = Some(pem);
            }
            let limits =
                Limits::redis_with(url, &options).map_err(|e| CliError::Other(format!("invalid REDIS_URL: {e}")))?;
            tracing::info!("rate limits and quotas are shared through Redis");
            limits
        }
        None => Limits::in_process(),
    };
    let secret = config.secret()?;
    let limits = Arc::new(limits);
    telemetry::observe_limits(telemetry, &limits);
    let policies = Policies {
        login: config.login,
        api: config.rate_limits.clone(),
        secret,
        usage_buffer: config.usage_buffer,
        telemetry: Some(telemetry.clone()),
        github_keys: github::keyring(config)?,
        mail: config.smtp()?.is_some(),
    };
    let mut state = AppState::new(service, hasher, Arc::new(RequestAuditSink), limits, policies, &config.public_url());
    if config.public_url.is_none() {
        // No URL to hold a browser's `Origin` to: the host it reached Keyward by is it.
        state.cookies = keyward_http::CookieSettings::for_any_host();
    }
    Ok(state)
}

async fn run_server<S: Store>(state: AppState<S, Limits>, config: &Config) -> Result<(), CliError> {
    // Bound before anything else, so that a port of 0 is known by the time the error
    // envelopes' `documentation_url` is made from it.
    let listener = std::net::TcpListener::bind(config.listen)
        .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
        .map_err(|e| CliError::Other(format!("cannot listen on {}: {e}", config.listen)))?;
    let bound = listener.local_addr().map_err(|e| CliError::Other(format!("cannot listen: {e}")))?;
    let settings = HttpSettings {
        public_url: config.public_url_at(bound),
        trusted_proxies: TrustedProxies(config.trusted_proxies()?),
        metrics_token: config.metrics_token()?,
    };
    // Where a person goes first, on standard output beside the one-time login it is for.
    print_once(&format!("Dashboard: {}{}", settings.public_url.trim_end_matches('/'), keyward_dashboard::BASE));
    let mut state = state;
    if state.people.mails_links() {
        // Mailed links start with the URL this instance is reached at (the port is known now).
        let links = keyward_domain::people_service::MailLinks { public_url: settings.public_url.clone() };
        state.people = state.people.with_mail(links);
    }
    let state = web::Data::new(state);
    let flusher = background::spawn(&state, config)?;
    let factory_settings = settings.clone();
    let factory_state = state.clone();
    let mut server = HttpServer::new(move || {
        keyward_http::app_with(
            factory_state.clone(),
            factory_settings.clone(),
            keyward_dashboard::configure::<S, Limits>,
        )
    })
    // A request's head must arrive within 5 s (actix's default, stated here because it
    // is one half of the slow-client defence; the body's deadline is the other, in
    // `keyward_http::extract::BODY_READ_TIMEOUT`).
    .client_request_timeout(std::time::Duration::from_secs(5))
    .listen(listener)
    .map_err(|e| CliError::Other(format!("cannot listen on {bound}: {e}")))?;
    if config.workers > 0 {
        server = server.workers(config.workers);
    }
    for addr in server.addrs() {
        tracing::info!(%addr, public_url = %settings.public_url, "listening");
    }
    // actix-web stops gracefully on SIGTERM and SIGINT: it stops accepting, lets requests
    // in flight finish (30 s at most), then returns.
    server.run().await.map_err(|e| CliError::Other(format!("server failed: {e}")))?;
    // The requests in flight are done: write the usage they left in memory, after the
    // flush that may be running now.
    let flushed = flusher.stop().await;
    tracing::info!(usage_records_flushed = flushed, usage_records_dropped = state.meter.dropped(), "stopped");
    // The last spans and a last collection of the metrics, to the collector if there is one.
    let telemetry = state.instruments.telemetry().clone();
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    Ok(())
}

const BOOTSTRAP_OWNER: &str = "admin@keyward.local";

async fn serve(config: Config, bootstrap_key_file: Option<PathBuf>, telemetry: &Telemetry) -> Result<(), CliError> {
    if let Some(url) = config.database_url() {
        let pending = keyward_store_pg::pending_migrations(url).await.map_err(|e| CliError::Other(e.to_string()))?;
        if pending > 0 {
            return Err(CliError::Other(format!(
                "{pending} database migrations are pending: run `keyward migrate` first"
            )));
        }
        let state = pg_state(&config, telemetry).await?;
        postgres::at_start(&state, &config).await?;
        // Verification reads keys through the cache; other instances' changes reach it
        // through LISTEN/NOTIFY (the CLI commands need neither).
        state.service.store().start_invalidation_listener();
        return run_server(state, &config).await;
    }
    tracing::warn!(
        "NO DATABASE CONFIGURED: storing everything in memory. All data is lost when keyward stops. Set DATABASE_URL for PostgreSQL."
    );
    let state = state(MemStore::new(), &config, telemetry)?;
    let owner = parse_email(BOOTSTRAP_OWNER)?;
    let (account, member, issued) = state
        .people
        .create_account_with_owner("bootstrap", Plan::Enterprise, owner, None, true)
        .await
        .map_err(|e| CliError::Other(format!("cannot create the bootstrap account: {e}")))?;
    let issued = issued.ok_or_else(|| CliError::Other("the bootstrap account has no key".into()))?;
    let password = member.initial_password.as_ref().map_or("", |p| p.expose_secret());
    print_once(&format!(
        "\nBootstrap account {} (enterprise, in memory).\nOwner login, shown once: {BOOTSTRAP_OWNER} / {password}\nAccount key, shown once: {}\n",
        account.id,
        issued.plaintext.expose_secret()
    ));
    if let Some(path) = &bootstrap_key_file {
        files::write_secret_file(path, issued.plaintext.expose_secret())?;
    }
    run_server(state, &config).await
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let mut config = Config::load(cli.config.as_deref())?;
    // A flag or variable given replaces the file's value.
    macro_rules! given {
        ($($field:ident),+) => {
            $(if cli.$field.is_some() {
                config.$field = cli.$field;
            })+
        };
    }
    given!(
        database_url,
        redis_url,
        redis_ca_file,
        github_keys_file,
        github_keys_url,
        secret,
        secret_previous,
        smtp_url,
        mail_from
    );
    if let Some(on) = cli.github_secret_scanning {
        config.github_secret_scanning = on;
    }
    if let Some(allow) = cli.webhooks_allow_private {
        config.webhooks.allow_private = allow;
    }
    if let Some(format) = cli.log_format {
        config.log_format = format;
    }
    let telemetry = telemetry::init(config.log_format);
    match cli.command {
        Command::Serve { listen, public_url, bootstrap_key_file, metrics_token } => {
            if let Some(listen) = listen {
                config.listen = listen;
            }
            if metrics_token.is_some() {
                config.metrics_token = metrics_token;
            }
            if public_url.is_some() {
                config.public_url = public_url;
            }
            serve(config, bootstrap_key_file, &telemetry).await
        }
        Command::Migrate => {
            let url = config.database_url().ok_or(CliError::NoDatabase)?;
            let applied = keyward_store_pg::run_migrations(url).await.map_err(|e| CliError::Other(e.to_string()))?;
            tracing::info!(applied = applied.len(), versions = ?applied, "migrations applied; the schema is current");
            Ok(())
        }
        Command::Account { command: AccountCommand::Create { name, plan, owner_email, password_stdin, key_file } } => {
            let state = pg_state(&config, &telemetry).await?;
            let (account, owner, issued) = match owner_email {
                Some(email) => {
                    let email = parse_email(&email)?;
                    let password = if password_stdin { Some(password_from_stdin()?) } else { None };
                    let (account, owner, issued) = state
                        .people
                        .create_account_with_owner(&name, plan, email, password, true)
                        .await
                        .map_err(|e| other("cannot create the account")(&e))?;
                    (account, Some(owner), issued)
                }
                None => {
                    let (account, issued) = state
                        .service
                        .create_account(&name, plan, true)
                        .await
                        .map_err(|e| other("cannot create the account")(&e))?;
                    (account, None, issued)
                }
            };
            let issued = issued.ok_or_else(|| CliError::Other("the account has no key".into()))?;
            let mut text = format!("Account {} ({plan}) created.", account.id);
            if let Some(owner) = &owner {
                text.push_str(&format!("\nOwner: {}", owner.user.email));
                if let Some(password) = &owner.initial_password {
                    text.push_str(&format!("\nOne-time password, shown once: {}", password.expose_secret()));
                }
            }
            text.push_str(&format!("\nAccount key, shown once: {}", issued.plaintext.expose_secret()));
            print_once(&text);
            if let Some(path) = &key_file {
                files::write_secret_file(path, issued.plaintext.expose_secret())?;
            }
            Ok(())
        }
        Command::User { command: UserCommand::Add { account, email, role, password_stdin } } => {
            let state = pg_state(&config, &telemetry).await?;
            let password = if password_stdin { Some(password_from_stdin()?) } else { None };
            let added = state
                .people
                .add_member(account, parse_email(&email)?, role, password)
                .await
                .map_err(|e| other("cannot add the user")(&e))?;
            let mut text = format!("{} is now {role} of {account}.", added.user.email);
            if let Some(password) = &added.initial_password {
                text.push_str(&format!("\nOne-time password, shown once: {}", password.expose_secret()));
            }
            print_once(&text);
            Ok(())
        }
        Command::User { command: UserCommand::SetPassword { email, password_stdin } } => {
            let state = pg_state(&config, &telemetry).await?;
            let (password, generated) =
                if password_stdin { (password_from_stdin()?, false) } else { (Password::generate(&OsRandom), true) };
            let user = state
                .people
                .set_password(&parse_email(&email)?, password.clone(), generated)
                .await
                .map_err(|e| other("cannot set the password")(&e))?;
            if generated {
                print_once(&format!("One-time password for {}, shown once: {}", user.email, password.expose_secret()));
            } else {
                print_once(&format!("Password of {} changed.", user.email));
            }
            Ok(())
        }
        Command::Audit { command: AuditCommand::Head } => {
            let state = pg_state(&config, &telemetry).await?;
            let reports =
                state.service.verify_audit(None).await.map_err(|e| other("cannot read the audit trail")(&e))?;
            for report in &reports {
                if let Some((seq, hash)) = report.head {
                    let head = keyward_domain::audit::AnchoredHead { account: report.account, seq, hash };
                    print_once(&head.to_string());
                }
            }
            Ok(())
        }
        Command::Audit { command: AuditCommand::Verify { account, expect_head } } => {
            let state = pg_state(&config, &telemetry).await?;
            let reports =
                state.service.verify_audit(account).await.map_err(|e| other("cannot read the audit trail")(&e))?;
            let mut broken = false;
            for anchor in &expect_head {
                let held =
                    state.service.holds_anchor(anchor).await.map_err(|e| other("cannot read the audit trail")(&e))?;
                if !held {
                    broken = true;
                    print_once(&format!("{anchor}: MISSING (the anchored event is gone or changed)"));
                }
            }
            for report in &reports {
                let chain = report.account.map_or_else(|| "(no account)".to_owned(), |a| a.to_string());
                match report.broken_at {
                    Some(event) => {
                        broken = true;
                        print_once(&format!("{chain}: BROKEN at {event} ({} events)", report.events));
                    }
                    None => print_once(&format!("{chain}: ok ({} events)", report.events)),
                }
            }
            if broken { Err(CliError::Other("the audit trail has been altered".into())) } else { Ok(()) }
        }
        Command::Audit { command: AuditCommand::Purge } => {
            let state = pg_state(&config, &telemetry).await?;
            let removed = state.service.purge_audit().await.map_err(|e| other("cannot purge the audit trail")(&e))?;
            print_once(&format!("Purged {removed} audit events past their retention."));
            Ok(())
        }
        Command::Openapi => {
            print_once(keyward_http::openapi::document_json().trim_end());
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // actix's system is a tokio runtime; each HTTP worker thread runs one more.
    match actix_web::rt::System::new().block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyward: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
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
