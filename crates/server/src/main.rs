//! `keyward`: the binary. Parses the command line and configuration, wires a store into the
//! HTTP application, and runs it. No business logic lives here.

mod background;
mod cli;
mod config;
mod files;
mod github;
mod ops;
mod postgres;
mod settings;
mod shutdown;
mod telemetry;

use std::{
    io::{BufRead as _, Write as _},
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
};

use actix_web::{HttpServer, web};
use clap::Parser as _;
use cli::{AccountCommand, AuditCommand, Cli, Command, ConfigCommand, UserCommand};
use config::Config;
use keyward_domain::{OsRandom, Plan, Store, SystemClock, key_service::KeyService, password::Password, people::Email};
use keyward_http::{AppState, HttpSettings, Policies, TrustedProxies, audit::RequestAuditSink};
use keyward_ratelimit::Limits;
use keyward_runtime::password::BlockingPasswordHasher;
use keyward_store_mem::MemStore;
use keyward_telemetry::Telemetry;
use postgres::pg_state;

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

/// The rate limiter and quota ledger the configuration asks for (made, not yet connected).
fn limits(config: &Config) -> Result<Limits, CliError> {
    Ok(match config.redis_url() {
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
    })
}

fn state<S: Store>(store: S, config: &Config, telemetry: &Telemetry) -> Result<AppState<S, Limits>, CliError> {
    // Host names in IP allowlists resolve through the system resolver, cached briefly.
    let resolver = Arc::new(keyward_resolver::SystemResolver::new(keyward_resolver::ResolverConfig::default()));
    let service = KeyService::new(store, Arc::new(SystemClock), Arc::new(OsRandom), Arc::new(config.domain()?))
        .with_resolver(resolver);
    let hasher = BlockingPasswordHasher::new(config.passwords.params(), config.passwords.concurrency())
        .map_err(|e| CliError::Other(format!("invalid password hashing settings: {e}")))?;
    let limits = limits(config)?;
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
    let background = background::spawn(&state, config)?;
    let grace = std::time::Duration::from_secs(config.shutdown_grace_seconds);
    let delay = std::time::Duration::from_secs(config.shutdown_delay_seconds.min(config.shutdown_grace_seconds));
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
    // Signals are ours (shutdown.rs): readiness goes first, then the listener.
    .disable_signals()
    .shutdown_timeout(grace.saturating_sub(delay).as_secs().max(1))
    .listen(listener)
    .map_err(|e| CliError::Other(format!("cannot listen on {bound}: {e}")))?;
    if config.workers > 0 {
        server = server.workers(config.workers);
    }
    for addr in server.addrs() {
        tracing::info!(%addr, public_url = %settings.public_url, "listening");
    }
    let server = server.run();
    let signalled = shutdown::on_signal(server.handle(), state.draining.clone(), delay);
    server.await.map_err(|e| CliError::Other(format!("server failed: {e}")))?;
    // The requests in flight are done: write the usage they left in memory and let the
    // outbox workers end their tries, within what is left of the grace.
    let deadline = shutdown::deadline(signalled, grace);
    match background.stop(deadline).await {
        Some(flushed) => {
            tracing::info!(usage_records_flushed = flushed, usage_records_dropped = state.meter.dropped(), "stopped");
        }
        None => tracing::warn!("the grace period ended before the usage was flushed and the workers stopped"),
    }
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

/// The first account of an empty PostgreSQL database, with its owner: the login and the
/// account key are printed once and written to `path` (mode 0600) for the operator.
async fn bootstrap_postgres(config: &Config, telemetry: &Telemetry, path: &std::path::Path) -> Result<(), CliError> {
    let state = pg_state(config, telemetry).await?;
    let owner = parse_email(BOOTSTRAP_OWNER)?;
    let (account, member, issued) = state
        .people
        .create_account_with_owner("default", Plan::Enterprise, owner, None, true)
        .await
        .map_err(|e| other("cannot create the first account")(&e))?;
    let issued = issued.ok_or_else(|| CliError::Other("the first account has no key".into()))?;
    let password = member.initial_password.as_ref().map_or("", |p| p.expose_secret());
    let text = format!(
        "First account {} (enterprise).\nOwner login, one-time password: {BOOTSTRAP_OWNER} / {password}\nAccount key: {}\n",
        account.id,
        issued.plaintext.expose_secret()
    );
    files::write_secret_file(path, &text)?;
    print_once(&format!("\n{text}(also written to {}, mode 0600)\n", path.display()));
    Ok(())
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let mut config = settings::load(cli.config.as_deref(), &|name| std::env::var(name).ok())?;
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
            // Several instances or jobs may start at once: one migrates (and bootstraps)
            // at a time.
            let mut lock =
                keyward_store_pg::MigrationLock::acquire(url).await.map_err(|e| other("cannot migrate")(&e))?;
            let applied = lock.migrate().await.map_err(|e| other("cannot migrate")(&e))?;
            tracing::info!(applied = applied.len(), versions = ?applied, "migrations applied; the schema is current");
            if let Some(path) = &config.bootstrap_file
                && !lock.has_accounts().await.map_err(|e| other("cannot read the accounts")(&e))?
            {
                bootstrap_postgres(&config, &telemetry, path).await?;
            }
            drop(lock);
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
        Command::Healthcheck { addr } => {
            ops::healthcheck(addr.unwrap_or(config.listen)).map_err(|e| CliError::Other(format!("unhealthy: {e}")))
        }
        Command::Config { command: ConfigCommand::Check } => ops::config_check(&config),
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
