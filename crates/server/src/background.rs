//! What runs beside the HTTP server: the usage flusher, the retention purges and the
//! webhook worker. Each keeps going whatever a round of it meets; the flusher alone is
//! stopped (and drained) on shutdown.

use std::sync::Arc;

use keyward_domain::Store;
use keyward_http::AppState;
use keyward_ratelimit::Limits;
use keyward_runtime::{retention::Retention, usage::Flusher};

use crate::{CliError, config::Config, telemetry};

/// Starts the background work for `state`; answers the flusher, to stop after the server.
pub(crate) fn spawn<S: Store>(state: &AppState<S, Limits>, config: &Config) -> Result<Flusher, CliError> {
    // Usage leaves memory in one batch a second.
    let flusher = keyward_runtime::usage::spawn_observed_flusher(
        state.meter.clone(),
        state.service.store().clone(),
        std::time::Duration::from_secs(1),
        telemetry::flush_observer(state.instruments.telemetry()),
    );
    keyward_runtime::retention::spawn_retention_purges(
        state.service.clone(),
        Retention { usage: time::Duration::days(i64::from(config.usage_retention_days)) },
    );
    // Every instance delivers webhooks; the outbox hands each delivery to one of them.
    let sender = Arc::new(keyward_webhooks::HttpSender::new(config.webhooks.allow_private));
    keyward_webhooks::spawn_worker(state.service.clone(), sender, keyward_webhooks::WorkerSettings::default())
        .map_err(|e| CliError::Other(format!("cannot start the webhook worker: {e}")))?;
    Ok(flusher)
}
