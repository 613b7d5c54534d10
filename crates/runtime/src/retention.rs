//! The retention purges on a schedule: audit events past their plan's retention,
//! idempotency keys past 24 hours, usage records and settled webhook messages past the
//! configured number of days —
//! hourly, the first a minute after start. A failed purge is logged and tried again at the
//! next hour; nothing stops the scheduler but the runtime's end.

use std::time::Duration;

use keyward_domain::{Store, key_service::KeyService};

/// How long each kind of record is kept (audit events: by each account's plan).
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub usage: time::Duration,
}

/// Spawns the hourly purges on the current tokio runtime.
pub fn spawn_retention_purges<S: Store>(service: KeyService<S>, retention: Retention) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval =
            tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(60), Duration::from_secs(3600));
        loop {
            interval.tick().await;
            purge_once(&service, retention).await;
        }
    })
}

/// One round of every purge, each independent of the others' failures.
pub async fn purge_once<S: Store>(service: &KeyService<S>, retention: Retention) {
    let now = service.now();
    match service.purge_audit().await {
        Ok(removed) => tracing::info!(removed, "audit retention purge"),
        Err(error) => tracing::warn!(%error, "audit retention purge failed"),
    }
    let store = service.store();
    if let Err(error) = store.purge_idempotency(now - keyward_domain::idempotency::RETENTION).await {
        tracing::warn!(%error, "idempotency key purge failed");
    }
    if let Err(error) = store.purge_usage(now - retention.usage).await {
        tracing::warn!(%error, "usage retention purge failed");
    }
    // Delivered or given up on: kept as long as usage records, for the attempts list.
    if let Err(error) = store.purge_webhook_messages(now - retention.usage).await {
        tracing::warn!(%error, "webhook message purge failed");
    }
}
