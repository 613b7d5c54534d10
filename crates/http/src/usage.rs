//! Usage metering without a write on the hot path: requests append to the domain's
//! [`UsageMeter`] (a bounded in-memory buffer), and the flusher spawned here writes it in
//! one batch every second and logs what went wrong. A graceful shutdown flushes what is left
//! ([`flush`]).

use std::{sync::Arc, time::Duration};

use keyward_domain::ports::UsageStore;
pub use keyward_domain::usage::UsageMeter;

/// Flushes the meter now, logging a storage failure (the batch is kept for the next flush)
/// and, at most once a minute, records dropped because the buffer was full. Returns how
/// many records were written.
pub async fn flush<S: UsageStore>(meter: &UsageMeter, store: &S) -> usize {
    if let Some(dropped) = meter.drops_to_report(time::OffsetDateTime::now_utc()) {
        tracing::warn!(
            dropped,
            capacity = meter.capacity(),
            "the usage buffer is full: usage records are being dropped"
        );
    }
    match meter.flush(store).await {
        Ok(written) => written,
        Err(error) => {
            tracing::warn!(%error, "could not write usage; keeping it for the next flush");
            0
        }
    }
}

/// Flushes every `every` until the process ends.
pub fn spawn_flusher<S: UsageStore + 'static>(meter: Arc<UsageMeter>, store: S, every: Duration) {
    actix_web::rt::spawn(async move {
        let mut interval = actix_web::rt::time::interval(every);
        loop {
            interval.tick().await;
            flush(&meter, &store).await;
        }
    });
}
