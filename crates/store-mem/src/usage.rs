//! `UsageStore` in memory: exact counters, the newest records up to a bound.

use crate::*;

fn day_number(ts: OffsetDateTime) -> i64 {
    ts.unix_timestamp().div_euclid(86_400)
}

impl UsageStore for MemStore {
    fn record_usage(&self, batch: &[UsageRecord]) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.write(|state| {
            for record in batch {
                if let Some(key_id) = record.key_id {
                    if let Some(key) = state.keys.get_mut(&key_id) {
                        key.usage_count += 1;
                        key.last_used_at = Some(key.last_used_at.map_or(record.ts, |at| at.max(record.ts)));
                    }
                    *state.daily.entry((key_id, day_number(record.ts))).or_default() += 1;
                }
                let position = UsagePosition { ts: record.ts, seq: state.next_usage_seq };
                state.next_usage_seq += 1;
                // What spent credits is not kept with the record (as in PostgreSQL).
                let record = UsageRecord { quota_spent: None, ..record.clone() };
                state.usage.push_back(UsageEntry { position, record });
            }
            for (key_id, spend) in keyward_domain::usage::quota_spends_by_key(batch) {
                if let Some(key) = state.keys.get_mut(&key_id) {
                    key.quota_balance = Some(QuotaBalance::after(key.quota_balance, &spend));
                }
            }
            let excess = state.usage.len().saturating_sub(self.usage_records);
            state.usage.drain(..excess);
        });
        ready(Ok(()))
    }

    fn key_usage(
        &self,
        account: AccountId,
        key: KeyId,
        window: (Option<OffsetDateTime>, Option<OffsetDateTime>),
        before: Option<UsagePosition>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<UsageEntry>, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            let mut found: Vec<UsageEntry> = state
                .usage
                .iter()
                .filter(|e| e.record.account_id == account && e.record.key_id == Some(key))
                .filter(|e| window.0.is_none_or(|since| e.position.ts >= since))
                .filter(|e| window.1.is_none_or(|until| e.position.ts < until))
                .filter(|e| before.is_none_or(|b| e.position < b))
                .cloned()
                .collect();
            found.sort_by_key(|e| std::cmp::Reverse(e.position));
            found.truncate(limit as usize);
            found
        })))
    }

    fn usage_summary(
        &self,
        account: AccountId,
        key: KeyId,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<UsageSummary, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            if state.keys.get(&key).is_none_or(|k| k.account_id != account) {
                return UsageSummary::default();
            }
            let first = UsageSummary::first_day(now).midnight().assume_utc();
            let since = day_number(first);
            let days = state.daily.iter().filter(|((k, d), _)| *k == key && *d >= since).map(|((_, d), count)| {
                let date = first + time::Duration::days(d - since);
                (date.date(), *count)
            });
            UsageSummary::of_days(now, days)
        })))
    }

    fn account_stats(
        &self,
        account: AccountId,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<AccountStats, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            let (day, _) = day_and_month_start(now);
            let verifications: Vec<&UsageRecord> = state
                .usage
                .iter()
                .map(|e| &e.record)
                .filter(|r| r.account_id == account && r.outcome.is_some())
                .collect();
            let mut stats = stats_of(&verifications, day);
            let since = day_number(UsageSummary::first_of_last_days(now).midnight().assume_utc());
            let mut by_key: HashMap<KeyId, u64> = HashMap::new();
            for ((key, _), count) in state.daily.iter().filter(|((_, d), _)| *d >= since) {
                let service =
                    state.keys.get(key).is_some_and(|k| k.account_id == account && k.kind == KeyKind::Service);
                if service {
                    *by_key.entry(*key).or_default() += count;
                }
            }
            stats.top_keys = KeyUse::top(by_key.into_iter().map(|(key_id, requests)| KeyUse { key_id, requests }));
            stats
        })))
    }

    fn purge_usage(&self, before: OffsetDateTime) -> impl Future<Output = Result<u64, StorageError>> + Send {
        ready(Ok(self.write(|state| {
            let count = state.usage.len();
            state.usage.retain(|e| e.position.ts >= before);
            (count - state.usage.len()) as u64
        })))
    }
}

/// Statistics of verification records.
fn stats_of(verifications: &[&UsageRecord], day_start: OffsetDateTime) -> AccountStats {
    let mut stats = AccountStats { verifications_total: verifications.len() as u64, ..AccountStats::default() };
    let (mut valid, mut timed, mut total_us) = (0u64, 0u64, 0f64);
    for record in verifications {
        if record.ts >= day_start {
            stats.verifications_today += 1;
        }
        if record.outcome == Some(keyward_domain::VerifyCode::Valid) {
            valid += 1;
        }
        if let Some(us) = record.response_time_us {
            timed += 1;
            total_us += f64::from(us);
        }
        if let Some(outcome) = record.outcome {
            *stats.by_code.entry(outcome.as_str().to_owned()).or_default() += 1;
        }
    }
    stats.success_rate =
        if stats.verifications_total == 0 { 0.0 } else { valid as f64 / stats.verifications_total as f64 };
    stats.avg_response_time_ms = (timed > 0).then(|| total_us / timed as f64 / 1000.0);
    stats
}
