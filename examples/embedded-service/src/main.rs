//! Runs the example service: `DATABASE_URL` (a database `keyward migrate` prepared),
//! `KEYWARD_ACCOUNT_ID` (the account whose keys it accepts), `LISTEN` (default
//! 127.0.0.1:8090), optional `REDIS_URL` (limits shared with the Keyward servers).
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/keyward KEYWARD_ACCOUNT_ID=acct_… \
//!   cargo run -p keyward-example-embedded
//! curl -H "Authorization: Bearer $CUSTOMER_KEY" http://127.0.0.1:8090/servers
//! ```

use std::sync::Arc;

use keyward_ratelimit::Limits;
use keyward_resolver::SystemResolver;
use keyward_runtime::embedded::{EmbeddedOptions, EmbeddedVerifier};

fn required(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

#[actix_web::main]
async fn main() -> Result<(), String> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let database_url = required("DATABASE_URL")?;
    let account = required("KEYWARD_ACCOUNT_ID")?.parse().map_err(|_| "KEYWARD_ACCOUNT_ID is not an account id")?;
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8090".into());
    let limits = match std::env::var("REDIS_URL") {
        Ok(url) => Limits::redis(&url, std::time::Duration::from_millis(250)).map_err(|e| e.to_string())?,
        Err(_) => Limits::in_process(),
    };
    // The parts, each from its adapter: PostgreSQL (migrations checked, the cache and its
    // invalidation listener running), the system resolver, the limits; the runtime composes.
    let store =
        keyward_store_pg::embedded::connect(&database_url, &Default::default()).await.map_err(|e| e.to_string())?;
    let resolver = Arc::new(SystemResolver::new(Default::default()));
    let embedded = EmbeddedVerifier::start(store, account, Arc::new(limits), resolver, EmbeddedOptions::default());
    let verifier = embedded.verifier().clone();
    let server = actix_web::HttpServer::new(move || keyward_example_embedded::app(verifier.clone()))
        .bind(&listen)
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    eprintln!("example service listening on {listen}");
    server.run().await.map_err(|e| e.to_string())?;
    // Stopped gracefully (SIGINT/SIGTERM): write the usage still in memory.
    let flushed = embedded.shutdown().await;
    eprintln!("stopped; {flushed} usage records written");
    Ok(())
}
