//! Usage metering without a write on the hot path: requests append to the domain's
//! [`UsageMeter`] (a bounded in-memory buffer), and the flusher spawned here writes it in
//! one batch every second and logs what went wrong. A graceful shutdown flushes what is left
//! ([`flush`]).

use std::{sync::Arc, time::Duration};

pub use keyward_domain::meter::UsageMeter;
use keyward_domain::ports::UsageStore;

/// Flushes the meter now, logging a storage failure (the batch is kept for the next flush)
/// and, at most once a minute, records dropped because the buffer was full. Returns how
/// many records were written.
#[tracing::instrument(target = "keyward::otel", name = "usage.flush", skip_all, fields(written = tracing::field::Empty))]
pub async fn flush<S: UsageStore>(meter: &UsageMeter, store: &S) -> usize {
    flush_kept(meter, store, true).await.0
}

/// [`flush`], also answering how many records it had to keep for lack of storage; with
/// `warn_kept` false, keeping them is the caller's to report (it tries again).
async fn flush_kept<S: UsageStore>(meter: &UsageMeter, store: &S, warn_kept: bool) -> (usize, usize) {
    if let Some(dropped) = meter.drops_to_report(time::OffsetDateTime::now_utc()) {
        tracing::warn!(
            dropped,
            capacity = meter.capacity(),
            "the usage buffer is full: usage records are being dropped"
        );
    }
    let outcome = meter.flush(store).await;
    if outcome.rejected > 0 {
        tracing::error!(
            rejected = outcome.rejected,
            written = outcome.written,
            "storage refused some usage records; they were dropped and the rest written"
        );
    }
    if let Some(error) = &outcome.error
        && outcome.kept > 0
    {
        if warn_kept {
            tracing::warn!(%error, kept = outcome.kept, "could not write usage; keeping it for the next flush");
        } else {
            tracing::debug!(%error, kept = outcome.kept, "could not write usage yet; trying again");
        }
    }
    tracing::Span::current().record("written", outcome.written);
    let kept = if outcome.error.is_some() { outcome.kept } else { 0 };
    (outcome.written, kept)
}

/// The running flusher. [`Flusher::stop`] lets a flush in progress finish before the last
/// one: aborting the task instead could drop a batch it had taken from the meter but not
/// yet written, and a shutdown would lose it.
#[derive(Debug)]
#[must_use = "dropping the flusher stops it after one last flush"]
pub struct Flusher {
    /// When the last flush must be done by.
    stop: tokio::sync::oneshot::Sender<tokio::time::Instant>,
    task: tokio::task::JoinHandle<usize>,
    /// Held for each flush, the schedule's and [`Flusher::flush_now`]'s: a flush takes the
    /// whole buffer, so one that did not wait for another in progress could return before
    /// that one's records are written.
    flushing: Arc<tokio::sync::Mutex<()>>,
}

impl Flusher {
    /// Stops flushing on a schedule, waits for a flush in progress, then writes what is
    /// left, once; returns how many records that last flush wrote.
    pub async fn stop(self) -> usize {
        self.stop_by(tokio::time::Instant::now()).await
    }

    /// [`Flusher::stop`], trying the last flush again while storage is unavailable (a
    /// connection that died with a runtime being shut down, a database restarting) until
    /// `deadline`; returns how many records the last flushes wrote.
    pub async fn stop_by(self, deadline: tokio::time::Instant) -> usize {
        // Refused only when the task has already ended, which is what this asks for.
        let _ = self.stop.send(deadline);
        self.task.await.unwrap_or(0)
    }

    /// Writes what `meter` holds now, after a flush in progress; returns how many records
    /// this call wrote. `meter` and `store` are the ones the flusher was spawned with.
    pub async fn flush_now<S: UsageStore>(&self, meter: &UsageMeter, store: &S) -> usize {
        let _flushing = self.flushing.lock().await;
        flush(meter, store).await
    }
}

/// Flushes every `every` until [`Flusher::stop`] (or the handle's drop).
pub fn spawn_flusher<S: UsageStore + 'static>(meter: Arc<UsageMeter>, store: S, every: Duration) -> Flusher {
    spawn_observed_flusher(meter, store, every, |_| {})
}

/// [`spawn_flusher`], telling `observe` how long each scheduled flush took (the binary's
/// flush-duration metric).
pub fn spawn_observed_flusher<S: UsageStore + 'static>(
    meter: Arc<UsageMeter>,
    store: S,
    every: Duration,
    observe: impl Fn(Duration) + Send + 'static,
) -> Flusher {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<tokio::time::Instant>();
    let flushing = Arc::new(tokio::sync::Mutex::new(()));
    let task = tokio::spawn({
        let flushing = flushing.clone();
        async move {
            let mut interval = tokio::time::interval(every);
            let deadline = loop {
                // Only the wait for the next tick is raced against the stop signal: a flush,
                // once begun, runs to its end.
                tokio::select! {
                    biased;
                    // A dropped handle stops at once, with one last try.
                    deadline = &mut stopped => break deadline.unwrap_or_else(|_| tokio::time::Instant::now()),
                    _ = interval.tick() => {
                        let _flushing = flushing.lock().await;
                        let started = std::time::Instant::now();
                        flush(&meter, &store).await;
                        observe(started.elapsed());
                    }
                }
            };
            let _flushing = flushing.lock().await;
            // A connection that died with a runtime being shut down fails one try; a
            // database restarting, several. Only what is still kept at the end is news.
            let (mut written, mut kept) = flush_kept(&meter, &store, false).await;
            let mut pause = Duration::from_millis(50);
            while kept > 0 && tokio::time::Instant::now() + pause < deadline {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
                let (more, still) = flush_kept(&meter, &store, false).await;
                (written, kept) = (written + more, still);
            }
            if kept > 0 {
                tracing::error!(kept, "could not write usage before the deadline; it is lost when the process ends");
            }
            written
        }
    });
    Flusher { stop, task, flushing }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use keyward_domain::{
        AccountId, KeyId,
        ports::StorageError,
        random::SeededRandom,
        usage::{AccountStats, UsageEntry, UsagePosition, UsageRecord, UsageSummary},
    };
    use time::OffsetDateTime;
    use tokio::sync::{Notify, Semaphore};

    use super::*;

    /// The read side of `UsageStore`, which the flusher never uses: test stores answer empty.
    macro_rules! nothing_to_read {
        () => {
            async fn key_usage(
                &self,
                _: AccountId,
                _: KeyId,
                _: (Option<OffsetDateTime>, Option<OffsetDateTime>),
                _: Option<UsagePosition>,
                _: u32,
            ) -> Result<Vec<UsageEntry>, StorageError> {
                Ok(Vec::new())
            }
            async fn usage_summary(
                &self,
                _: AccountId,
                _: KeyId,
                _: OffsetDateTime,
            ) -> Result<UsageSummary, StorageError> {
                Ok(UsageSummary::default())
            }
            async fn account_stats(&self, _: AccountId, _: OffsetDateTime) -> Result<AccountStats, StorageError> {
                Ok(AccountStats::default())
            }
            async fn purge_usage(&self, _: OffsetDateTime) -> Result<u64, StorageError> {
                Ok(0)
            }
        };
    }

    /// A store whose writes wait for a permit, so that a test can stop the flusher while a
    /// batch is being written.
    #[derive(Debug, Clone)]
    struct GatedStore(Arc<Gate>);

    #[derive(Debug)]
    struct Gate {
        entered: Notify,
        release: Semaphore,
        written: AtomicUsize,
    }

    impl std::ops::Deref for GatedStore {
        type Target = Gate;

        fn deref(&self) -> &Gate {
            &self.0
        }
    }

    impl UsageStore for GatedStore {
        async fn record_usage(&self, batch: &[UsageRecord]) -> Result<(), StorageError> {
            self.entered.notify_one();
            let permit = self.release.acquire().await.map_err(|_| StorageError::Unavailable("closed".into()))?;
            permit.forget();
            self.written.fetch_add(batch.len(), Ordering::SeqCst);
            Ok(())
        }
        nothing_to_read!();
    }

    fn record() -> UsageRecord {
        let (now, rng) = (OffsetDateTime::now_utc(), SeededRandom::new(7));
        UsageRecord {
            key_id: Some(KeyId::generate(now, &rng)),
            account_id: AccountId::generate(now, &rng),
            ts: now,
            endpoint: None,
            method: None,
            status_code: None,
            response_time_us: None,
            ip: None,
            outcome: None,
            quota_spent: None,
        }
    }

    #[tokio::test]
    async fn stopping_waits_for_the_batch_being_written_then_writes_the_rest() {
        let meter = Arc::new(UsageMeter::new(10));
        let store = GatedStore(Arc::new(Gate {
            entered: Notify::new(),
            release: Semaphore::new(0),
            written: AtomicUsize::new(0),
        }));
        for _ in 0..3 {
            meter.record(record());
        }
        // The first tick is immediate: that flush takes the three records and waits.
        let flusher = spawn_flusher(meter.clone(), store.clone(), Duration::from_secs(3600));
        store.entered.notified().await;
        meter.record(record());

        let stopping = tokio::spawn(flusher.stop());
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!stopping.is_finished(), "stop returned while a batch was being written");
        store.release.add_permits(2);
        assert_eq!(stopping.await.ok(), Some(1), "the last flush writes the record that came later");
        assert_eq!(store.written.load(Ordering::SeqCst), 4, "nothing taken from the meter is lost");
    }
    /// A store that is unavailable for its first `failures` writes, then writes.
    #[derive(Debug, Clone, Default)]
    struct FlakyStore(Arc<Flaky>);

    #[derive(Debug, Default)]
    struct Flaky {
        failures: AtomicUsize,
        written: AtomicUsize,
    }

    impl std::ops::Deref for FlakyStore {
        type Target = Flaky;

        fn deref(&self) -> &Flaky {
            &self.0
        }
    }

    impl UsageStore for FlakyStore {
        async fn record_usage(&self, batch: &[UsageRecord]) -> Result<(), StorageError> {
            if self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                return Err(StorageError::Unavailable("connection closed".into()));
            }
            self.written.fetch_add(batch.len(), Ordering::SeqCst);
            Ok(())
        }
        nothing_to_read!();
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_flush_is_tried_again_until_the_deadline_while_storage_is_unavailable() {
        let meter = Arc::new(UsageMeter::new(10));
        let store = FlakyStore::default();
        let flusher = spawn_flusher(meter.clone(), store.clone(), Duration::from_secs(3600));
        tokio::task::yield_now().await;
        for _ in 0..3 {
            meter.record(record());
        }
        store.failures.store(3, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        assert_eq!(flusher.stop_by(deadline).await, 3, "the records are written once storage answers");
        assert_eq!((store.written.load(Ordering::SeqCst), meter.buffered()), (3, 0));

        // Past the deadline, what storage never took stays in the meter (and is logged).
        let flusher = spawn_flusher(meter.clone(), store.clone(), Duration::from_secs(3600));
        tokio::task::yield_now().await;
        meter.record(record());
        store.failures.store(usize::MAX, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        assert_eq!(flusher.stop_by(deadline).await, 0);
        assert!(tokio::time::Instant::now() <= deadline, "the tries end by the deadline");
        assert_eq!(meter.buffered(), 1);
    }

    /// A store that refuses (as PostgreSQL refuses a NUL in text) every batch holding a
    /// record whose endpoint has a NUL, and writes the others; or refuses everything.
    #[derive(Debug, Default)]
    struct RefusingStore {
        written: std::sync::Mutex<Vec<UsageRecord>>,
        refuse_all: bool,
    }

    impl UsageStore for RefusingStore {
        async fn record_usage(&self, batch: &[UsageRecord]) -> Result<(), StorageError> {
            if self.refuse_all || batch.iter().any(|r| r.endpoint.as_deref().is_some_and(|e| e.contains('\0'))) {
                return Err(StorageError::Internal("invalid byte sequence for encoding \"UTF8\": 0x00".into()));
            }
            self.written.lock().unwrap().extend_from_slice(batch);
            Ok(())
        }
        nothing_to_read!();
    }

    fn poisoned() -> UsageRecord {
        UsageRecord { endpoint: Some("/a\0b".into()), ..record() }
    }

    #[tokio::test]
    async fn a_refused_record_is_isolated_dropped_and_counted_and_the_rest_written() {
        let meter = UsageMeter::new(100);
        let store = RefusingStore::default();
        for i in 0..37 {
            meter.record(if i == 3 || i == 30 { poisoned() } else { record() });
        }
        assert_eq!(flush(&meter, &store).await, 35);
        assert_eq!(store.written.lock().unwrap().len(), 35);
        assert_eq!((meter.rejected(), meter.buffered(), meter.dropped()), (2, 0, 0));
        // Metering goes on: the next flush is clean.
        meter.record(record());
        assert_eq!(flush(&meter, &store).await, 1);
        assert_eq!(meter.failed_flushes(), 1);
    }

    #[tokio::test]
    async fn a_refused_record_alone_waits_until_others_show_that_storage_works() {
        let meter = UsageMeter::new(100);
        let store = RefusingStore::default();
        meter.record(poisoned());
        assert_eq!(flush(&meter, &store).await, 0);
        assert_eq!((meter.rejected(), meter.buffered()), (0, 1), "nothing proves the record is the problem yet");
        meter.record(record());
        assert_eq!(flush(&meter, &store).await, 1);
        assert_eq!((meter.rejected(), meter.buffered()), (1, 0));
    }

    #[tokio::test]
    async fn storage_that_refuses_everything_loses_nothing() {
        let meter = UsageMeter::new(100);
        let store = RefusingStore { refuse_all: true, ..Default::default() };
        for _ in 0..20 {
            meter.record(record());
        }
        assert_eq!(flush(&meter, &store).await, 0);
        assert_eq!((meter.rejected(), meter.buffered(), meter.dropped()), (0, 20, 0));
    }
}
