//! `keyward`: the binary. Parses the command line and configuration, wires a store into the
//! HTTP application, and runs it. No business logic lives here.

mod config;

use std::{io::Write as _, path::PathBuf, process::ExitCode, sync::Arc};

use actix_web::{HttpServer, web};
use clap::{Parser, Subcommand};
use config::{Config, LogFormat};
use keyward_domain::{OsRandom, Plan, Store, SystemClock, service::KeyService};
use keyward_http::{AppState, HttpSettings, TrustedProxies};
use keyward_store_mem::MemStore;
use keyward_store_pg::PgStore;

#[derive(Debug, Parser)]
#[command(name = "keyward", version, about = "Self-hostable API key management")]
struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "KEYWARD_CONFIG")]
    config: Option<PathBuf>,
    /// PostgreSQL URL; without one, `serve` keeps everything in memory.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
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
        /// Base URL clients use (for documentation links in errors).
        #[arg(long, env = "KEYWARD_PUBLIC_URL")]
        public_url: Option<String>,
        /// In-memory mode: also write the bootstrap account key to this file (mode 0600).
        #[arg(long)]
        bootstrap_key_file: Option<PathBuf>,
    },
    /// Apply the embedded database migrations.
    Migrate,
    /// Manage accounts.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Print the OpenAPI document.
    #[command(hide = true)]
    Openapi,
}

#[derive(Debug, Subcommand)]
enum AccountCommand {
    /// Create an account with its default keyspace and a first account key, printed once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "free", value_parser = parse_plan)]
        plan: Plan,
        /// Also write the account key to this file (mode 0600) instead of only printing it.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
}

fn parse_plan(s: &str) -> Result<Plan, String> {
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

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYWARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,actix_server=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Pretty => builder.init(),
    }
}

/// Writes a secret to a file only its owner can read.
fn write_secret_file(path: &PathBuf, secret: &str) -> Result<(), CliError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| CliError::Other(format!("cannot write {}: {e}", path.display())))?;
    writeln!(file, "{secret}").map_err(|e| CliError::Other(format!("cannot write {}: {e}", path.display())))
}

/// Prints what the operator must see once (a new key) on standard output.
fn print_once(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

fn service<S: Store>(store: S, config: &Config) -> Result<KeyService<S>, CliError> {
    Ok(KeyService::new(store, Arc::new(SystemClock), Arc::new(OsRandom), Arc::new(config.domain()?)))
}

async fn run_server<S: Store>(service: KeyService<S>, config: &Config) -> Result<(), CliError> {
    let settings =
        HttpSettings { public_url: config.public_url(), trusted_proxies: TrustedProxies(config.trusted_proxies()?) };
    let state = web::Data::new(AppState { service });
    let factory_settings = settings.clone();
    let mut server = HttpServer::new(move || keyward_http::app(state.clone(), factory_settings.clone()))
        .bind(config.listen)
        .map_err(|e| CliError::Other(format!("cannot listen on {}: {e}", config.listen)))?;
    if config.workers > 0 {
        server = server.workers(config.workers);
    }
    for addr in server.addrs() {
        tracing::info!(%addr, public_url = %settings.public_url, "listening");
    }
    // actix-web stops gracefully on SIGTERM and SIGINT: it stops accepting, lets requests
    // in flight finish (30 s at most), then returns.
    server.run().await.map_err(|e| CliError::Other(format!("server failed: {e}")))?;
    tracing::info!("stopped");
    Ok(())
}

async fn serve(config: Config, bootstrap_key_file: Option<PathBuf>) -> Result<(), CliError> {
    match &config.database_url {
        Some(url) => {
            let pending =
                keyward_store_pg::pending_migrations(url).await.map_err(|e| CliError::Other(e.to_string()))?;
            if pending > 0 {
                return Err(CliError::Other(format!(
                    "{pending} database migrations are pending: run `keyward migrate` first"
                )));
            }
            let store =
                PgStore::connect(url, &config.database.pool_config()).map_err(|e| CliError::Other(e.to_string()))?;
            run_server(service(store, &config)?, &config).await
        }
        None => {
            tracing::warn!(
                "NO DATABASE CONFIGURED: storing everything in memory. All data is lost when keyward stops. Set DATABASE_URL for PostgreSQL."
            );
            let service = service(MemStore::new(), &config)?;
            let (account, issued) = service
                .create_account("bootstrap", Plan::Enterprise, true)
                .await
                .map_err(|e| CliError::Other(format!("cannot create the bootstrap account: {e}")))?;
            let issued = issued.ok_or_else(|| CliError::Other("the bootstrap account has no key".into()))?;
            print_once(&format!(
                "\nBootstrap account {} (enterprise, in memory).\nAccount key, shown once: {}\n",
                account.id,
                issued.plaintext.expose_secret()
            ));
            if let Some(path) = &bootstrap_key_file {
                write_secret_file(path, issued.plaintext.expose_secret())?;
            }
            run_server(service, &config).await
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let mut config = Config::load(cli.config.as_deref())?;
    if cli.database_url.is_some() {
        config.database_url = cli.database_url;
    }
    if let Some(format) = cli.log_format {
        config.log_format = format;
    }
    init_tracing(config.log_format);
    match cli.command {
        Command::Serve { listen, public_url, bootstrap_key_file } => {
            if let Some(listen) = listen {
                config.listen = listen;
            }
            if public_url.is_some() {
                config.public_url = public_url;
            }
            serve(config, bootstrap_key_file).await
        }
        Command::Migrate => {
            let url = config.database_url.as_deref().ok_or(CliError::NoDatabase)?;
            let applied = keyward_store_pg::run_migrations(url).await.map_err(|e| CliError::Other(e.to_string()))?;
            tracing::info!(applied = applied.len(), versions = ?applied, "migrations applied; the schema is current");
            Ok(())
        }
        Command::Account { command: AccountCommand::Create { name, plan, key_file } } => {
            let url = config.database_url.as_deref().ok_or(CliError::NoDatabase)?;
            let store =
                PgStore::connect(url, &config.database.pool_config()).map_err(|e| CliError::Other(e.to_string()))?;
            let service = service(store, &config)?;
            let (account, issued) = service
                .create_account(&name, plan, true)
                .await
                .map_err(|e| CliError::Other(format!("cannot create the account: {e}")))?;
            let issued = issued.ok_or_else(|| CliError::Other("the account has no key".into()))?;
            print_once(&format!(
                "Account {} ({}) created.\nAccount key, shown once: {}",
                account.id,
                plan,
                issued.plaintext.expose_secret()
            ));
            if let Some(path) = &key_file {
                write_secret_file(path, issued.plaintext.expose_secret())?;
            }
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
