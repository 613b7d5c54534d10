//! Usage metering: records aggregated in memory and written in batches, never on the hot
//! path.

use std::sync::{
    Mutex, PoisonError,
    atomic::{AtomicI64, AtomicU64, Ordering},
};

use time::OffsetDateTime;

use crate::{
    ports::{StorageError, UsageStore},
    usage::UsageRecord,
};

/// The in-memory side of metering: requests append a record to a bounded buffer (a mutex
/// held for one push, never across an await), and a flusher that the adapter runs writes
/// the buffer in one batch (at least once a second in `keyward serve` and in the embedded
/// verifier). Past its capacity records are dropped and counted, never waited for.
///
/// Logging is the flusher's job ([`UsageMeter::drops_to_report`]): the domain does no IO.
#[derive(Debug)]
pub struct UsageMeter {
    buffer: Mutex<Vec<UsageRecord>>,
    capacity: usize,
    dropped: AtomicU64,
    /// Records written by flushes, and flushes that failed (metrics).
    written: AtomicU64,
    failed_flushes: AtomicU64,
    /// Records storage refused and that were dropped (metrics).
    rejected: AtomicU64,
    /// What the last report said, and when (Unix seconds).
    reported: AtomicU64,
    reported_at: AtomicI64,
}

impl UsageMeter {
    pub fn new(capacity: usize) -> Self {
        Self {
            buffer: Mutex::new(Vec::new()),
            capacity,
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            failed_flushes: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            reported: AtomicU64::new(0),
            reported_at: AtomicI64::new(i64::MIN),
        }
    }

    /// Records one request; never blocks on storage.
    pub fn record(&self, record: UsageRecord) {
        let mut buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        if buffer.len() >= self.capacity {
            drop(buffer);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        buffer.push(record);
    }

    /// Records dropped because the buffer was full, since the start (a metric).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records waiting for the next flush (a metric).
    pub fn buffered(&self) -> usize {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Records written by flushes since the start (a metric).
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Flushes that failed since the start, their batches kept for the next (a metric).
    pub fn failed_flushes(&self) -> u64 {
        self.failed_flushes.load(Ordering::Relaxed)
    }

    /// The total dropped, when it grew since the last report and that report is a minute
    /// old: what a flusher logs, so that a full buffer cannot flood the log.
    pub fn drops_to_report(&self, now: OffsetDateTime) -> Option<u64> {
        let (dropped, now) = (self.dropped(), now.unix_timestamp());
        if dropped == self.reported.load(Ordering::Relaxed)
            || now.saturating_sub(self.reported_at.load(Ordering::Relaxed)) < 60
        {
            return None;
        }
        self.reported.store(dropped, Ordering::Relaxed);
        self.reported_at.store(now, Ordering::Relaxed);
        Some(dropped)
    }

    /// Writes everything buffered now as one batch.
    ///
    /// When storage refuses the batch (any error but `Unavailable`), the batch is split in
    /// halves until the records it refuses are isolated: the rest is written, and each
    /// refused record is dropped and counted ([`UsageMeter::rejected`]) — but only when some
    /// write of this flush succeeded, which shows that storage works and the record is the
    /// problem. Otherwise (storage unavailable, or refusing everything) the records go back
    /// to the buffer, as far as they fit, for the next flush. One bad record can therefore
    /// never stop metering for the others.
    pub async fn flush<S: UsageStore>(&self, store: &S) -> FlushOutcome {
        let batch = std::mem::take(&mut *self.buffer.lock().unwrap_or_else(PoisonError::into_inner));
        let mut outcome = FlushOutcome::default();
        if batch.is_empty() {
            return outcome;
        }
        // A stack of ranges of `batch` still to write.
        let mut pending = Vec::with_capacity(1);
        pending.push(0..batch.len());
        let (mut kept, mut refused) = (Vec::new(), Vec::new());
        let mut failed_writes = 0;
        while let Some(range) = pending.pop() {
            if failed_writes >= MAX_FAILED_WRITES_PER_FLUSH {
                kept.push(range);
                continue;
            }
            match store.record_usage(&batch[range.clone()]).await {
                Ok(()) => outcome.written += range.len(),
                Err(error @ StorageError::Unavailable(_)) => {
                    kept.push(range);
                    kept.append(&mut pending);
                    outcome.error = Some(error);
                }
                Err(error) => {
                    failed_writes += 1;
                    outcome.error = Some(error);
                    if range.len() == 1 {
                        refused.push(range);
                    } else {
                        let middle = range.start + range.len() / 2;
                        pending.push(middle..range.end);
                        pending.push(range.start..middle);
                    }
                }
            }
        }
        if outcome.written > 0 {
            outcome.rejected = refused.len();
        } else {
            kept.append(&mut refused);
        }
        if outcome.error.is_some() {
            self.failed_flushes.fetch_add(1, Ordering::Relaxed);
        }
        self.written.fetch_add(outcome.written as u64, Ordering::Relaxed);
        self.rejected.fetch_add(outcome.rejected as u64, Ordering::Relaxed);
        let back: usize = kept.iter().map(ExactSizeIterator::len).sum();
        if back > 0 {
            let mut buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
            let room = self.capacity.saturating_sub(buffer.len());
            let mut batch = batch.into_iter().map(Some).collect::<Vec<_>>();
            let returned = kept.into_iter().flatten().filter_map(|i| batch[i].take());
            let before = buffer.len();
            buffer.extend(returned.take(room));
            outcome.kept = buffer.len() - before;
            self.dropped.fetch_add((back - outcome.kept) as u64, Ordering::Relaxed);
        }
        outcome
    }

    /// Records dropped because storage refused them (a metric): each was refused on its own
    /// while others of its flush were written.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
}

/// How many failed writes one flush may spend isolating refused records; what is not
/// settled by then waits for the next flush.
const MAX_FAILED_WRITES_PER_FLUSH: usize = 64;

/// What one [`UsageMeter::flush`] did.
#[derive(Debug, Default)]
pub struct FlushOutcome {
    /// Records written.
    pub written: usize,
    /// Records storage refused on their own, dropped (never retried).
    pub rejected: usize,
    /// Records back in the buffer for the next flush.
    pub kept: usize,
    /// The last storage error met, for the adapter to log.
    pub error: Option<StorageError>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        id::{AccountId, KeyId},
        random::SeededRandom,
    };

    fn record(now: OffsetDateTime) -> UsageRecord {
        let rng = SeededRandom::new(1);
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

    #[test]
    fn a_full_buffer_drops_counts_and_reports_once_a_minute() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let meter = UsageMeter::new(2);
        assert_eq!(meter.drops_to_report(now), None, "nothing dropped, nothing to say");
        for _ in 0..5 {
            meter.record(record(now));
        }
        assert_eq!(meter.dropped(), 3);
        assert_eq!(meter.drops_to_report(now), Some(3));
        meter.record(record(now));
        assert_eq!(meter.drops_to_report(now + time::Duration::seconds(59)), None, "reported a moment ago");
        assert_eq!(meter.drops_to_report(now + time::Duration::seconds(60)), Some(4));
        assert_eq!(meter.drops_to_report(now + time::Duration::seconds(200)), None, "no new drops");
    }
}
