//! Serving from PostgreSQL: the store as configured, and what `serve` does to the data at
//! start before it answers — the warnings an operator should see, the imported legacy
//! hashes peppered and the webhook secrets sealed with `KEYWARD_SECRET`.

use keyward_http::AppState;
use keyward_ratelimit::Limits;
use keyward_store_pg::PgStore;
use keyward_telemetry::Telemetry;

use crate::{CliError, config::Config, state, telemetry};

pub(crate) async fn pg_state(config: &Config, telemetry: &Telemetry) -> Result<AppState<PgStore, Limits>, CliError> {
    let url = config.database_url().ok_or(CliError::NoDatabase)?;
    let mut store =
        PgStore::connect(url, &config.database.pool_config()).map_err(|e| CliError::Other(e.to_string()))?;
    if config.cache.enabled {
        store = store.with_key_cache(config.cache.config());
    }
    if let Some(at_rest) = config.at_rest()? {
        store = store.with_secrets_at_rest(at_rest);
    }
    telemetry::observe_store(telemetry, &store);
    state(store, config, telemetry)
}

/// The passes over stored data `serve` makes before answering.
pub(crate) async fn at_start(state: &AppState<PgStore, Limits>, config: &Config) -> Result<(), CliError> {
    let store = state.service.store();
    if config.secret.is_none() {
        tracing::warn!(
            "no KEYWARD_SECRET: idempotent replays will not survive a restart nor cross instances, \
             webhook signing secrets are stored in plaintext, and imported legacy key hashes stay plain SHA-256"
        );
    }
    if store.audit_trail_owned_by_this_role().await.unwrap_or(false) {
        tracing::warn!(
            "this database role owns audit_events, so it could disable the append-only trigger: \
             have a superuser hand it to keyward_audit_owner (docs/decisions.md, \"The audit trail's owner\")"
        );
    }
    // Imported legacy hashes stored before a secret was configured get its pepper now,
    // so that a dump of the database alone cannot be used to guess them.
    if let Some(pepper) = &state.service.config().legacy_pepper {
        let peppered = store
            .pepper_legacy_hashes(pepper)
            .await
            .map_err(|e| CliError::Other(format!("cannot pepper the imported legacy key hashes: {e}")))?;
        if peppered > 0 {
            tracing::info!(peppered, "imported legacy key hashes now keyed with the server's secret");
        }
    }
    // Webhook secrets written in plaintext, or sealed under KEYWARD_SECRET_PREVIOUS, are
    // sealed under KEYWARD_SECRET now.
    let sealed = store.seal_webhook_secrets().await.map_err(|e| {
        let cause = std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default();
        CliError::Other(format!("cannot seal the webhook secrets: {e}: {cause}"))
    })?;
    if sealed > 0 {
        tracing::info!(sealed, "webhook signing secrets now sealed with the server's secret");
    }
    Ok(())
}
