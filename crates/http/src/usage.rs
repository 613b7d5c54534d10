//! Usage metering without a write on the hot path: verifications append a record to an
//! in-memory buffer (a mutex held for one push, never across an await), and a background
//! task writes the buffer in one batch every second. The buffer is bounded: past its
//! capacity records are dropped and counted, never waited for. A graceful shutdown flushes
//! what is left.

use std::{
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

use keyward_domain::{ports::UsageStore, usage::UsageRecord};

#[derive(Debug)]
pub struct UsageMeter {
    buffer: Mutex<Vec<UsageRecord>>,
    capacity: usize,
    dropped: AtomicU64,
    last_warning: AtomicI64,
}

impl UsageMeter {
    pub fn new(capacity: usize) -> Self {
        Self { buffer: Mutex::new(Vec::new()), capacity, dropped: AtomicU64::new(0), last_warning: AtomicI64::new(0) }
    }

    /// Records one request; never blocks on storage.
    pub fn record(&self, record: UsageRecord) {
        let mut buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        if buffer.len() >= self.capacity {
            drop(buffer);
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let last = self.last_warning.load(Ordering::Relaxed);
            if now - last >= 60
                && self.last_warning.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
            {
                tracing::warn!(
                    dropped,
                    capacity = self.capacity,
                    "the usage buffer is full: usage records are being dropped"
                );
            }
            return;
        }
        buffer.push(record);
    }

    /// Records dropped because the buffer was full (a metric).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes everything buffered now as one batch; returns how many. On a storage error the
    /// batch goes back to the buffer (as far as it fits) for the next flush.
    pub async fn flush<S: UsageStore>(&self, store: &S) -> usize {
        let batch = std::mem::take(&mut *self.buffer.lock().unwrap_or_else(PoisonError::into_inner));
        if batch.is_empty() {
            return 0;
        }
        match store.record_usage(&batch).await {
            Ok(()) => batch.len(),
            Err(error) => {
                tracing::warn!(%error, records = batch.len(), "could not write usage; keeping it for the next flush");
                let mut buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
                let room = self.capacity.saturating_sub(buffer.len());
                let kept = batch.len().min(room);
                self.dropped.fetch_add((batch.len() - kept) as u64, Ordering::Relaxed);
                buffer.extend(batch.into_iter().take(kept));
                0
            }
        }
    }

    /// Flushes every `every` until the process ends.
    pub fn spawn_flusher<S: UsageStore + 'static>(self: std::sync::Arc<Self>, store: S, every: Duration) {
        actix_web::rt::spawn(async move {
            let mut interval = actix_web::rt::time::interval(every);
            loop {
                interval.tick().await;
                self.flush(&store).await;
            }
        });
    }
}
