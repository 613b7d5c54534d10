//! Stopping on SIGTERM (what compose and Kubernetes send on every deploy) or SIGINT, within
//! `shutdown_grace_seconds` (docs/deploy.md):
//!
//! 1. `/readyz` answers 503 at once, so that a load balancer takes the instance out;
//! 2. for `shutdown_delay_seconds` requests are still taken (the balancer may not know yet);
//! 3. the listener closes and the requests in flight finish;
//! 4. the usage left in memory is written and the outbox workers end their tries;
//! 5. the process exits 0.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use actix_web::dev::ServerHandle;
use tokio::time::Instant;

/// When the signal came, for the grace's deadline.
pub(crate) type Signalled = tokio::sync::oneshot::Receiver<Instant>;

/// Waits for SIGTERM or SIGINT, then drains as above (steps 1 to 3).
pub(crate) fn on_signal(server: ServerHandle, draining: Arc<AtomicBool>, delay: Duration) -> Signalled {
    let (signalled, when) = tokio::sync::oneshot::channel();
    actix_web::rt::spawn(async move {
        let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            tracing::error!("cannot listen for SIGTERM; stopping");
            server.stop(true).await;
            return;
        };
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        };
        let _ = signalled.send(Instant::now());
        draining.store(true, Ordering::Relaxed);
        tracing::info!(signal = name, delay_seconds = delay.as_secs(), "stopping: /readyz answers 503");
        tokio::time::sleep(delay).await;
        tracing::info!("stopping: no new connections; finishing the requests in flight");
        server.stop(true).await;
    });
    when
}

/// The moment everything must be done by: the signal's time (or now, when the server
/// stopped for another reason) plus the grace.
pub(crate) fn deadline(mut signalled: Signalled, grace: Duration) -> Instant {
    signalled.try_recv().unwrap_or_else(|_| Instant::now()) + grace
}
