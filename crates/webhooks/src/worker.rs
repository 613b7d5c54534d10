//! The delivery worker: every instance runs one; each round claims due deliveries (one
//! instance per delivery, `FOR UPDATE SKIP LOCKED` on PostgreSQL) and tries them
//! concurrently, and every few seconds it looks for the notices due (`key.expiring`,
//! `quota.low`, `quota.exhausted`). A failed round is logged and the loop goes on.
//!
//! It runs on a thread of its own with a single-threaded runtime: a delivery's bookkeeping
//! is a unit of work, whose future the domain does not promise to be `Send`, and a slow
//! receiver then never takes time from the threads that answer requests.

use std::{sync::Arc, time::Duration};

use keyward_domain::{
    Store,
    key_service::{KeyService, WebhookSender},
};

#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    /// How long the worker waits when nothing was due.
    pub idle: Duration,
    /// The most deliveries one round tries, concurrently.
    pub batch: u32,
    /// How often the notices (`key.expiring`, `quota.low`, `quota.exhausted`) are looked for.
    pub notice_scan: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self { idle: Duration::from_millis(500), batch: 16, notice_scan: Duration::from_secs(5) }
    }
}

/// Starts the worker on a thread of its own; it runs until the process ends.
pub fn spawn_worker<S: Store, W: WebhookSender + 'static>(
    service: KeyService<S>,
    sender: Arc<W>,
    settings: WorkerSettings,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("keyward-webhooks".into()).spawn(move || {
        runtime.block_on(async move {
            let mut scanned: Option<std::time::Instant> = None;
            loop {
                if scanned.is_none_or(|at| at.elapsed() >= settings.notice_scan) {
                    scanned = Some(std::time::Instant::now());
                    if let Err(error) = service.announce_notices().await {
                        tracing::warn!(%error, "webhook notice scan failed; retrying");
                    }
                }
                match service.deliver_due(&*sender, settings.batch).await {
                    // A full batch: more may be due at once.
                    Ok(tried) if tried == settings.batch as usize => continue,
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "webhook delivery round failed; retrying"),
                }
                tokio::time::sleep(settings.idle).await;
            }
        });
    })
}
