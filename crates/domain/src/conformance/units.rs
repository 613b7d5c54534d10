//! Conformance: idempotency keys, units of work, usage.

use super::*;

pub async fn idempotency_keys_follow_stripe_semantics<S: Store>(store: S) {
    use crate::idempotency::{Claim, StoredResponse};
    let f = fixture(store.clone(), Plan::Pro).await;
    let other = fixture(store, Plan::Pro).await;
    let store = f.service.store();
    let account = f.principal.account_id;
    let (mine, theirs) = ([1u8; 32], [2u8; 32]);
    assert_eq!(store.claim_idempotency(account, "k", mine, START).await.unwrap(), Claim::Claimed);
    assert_eq!(
        store.claim_idempotency(account, "k", mine, START).await.unwrap(),
        Claim::InFlight { fingerprint: mine }
    );
    // Keys are per account.
    assert_eq!(store.claim_idempotency(other.principal.account_id, "k", theirs, START).await.unwrap(), Claim::Claimed);
    let response = StoredResponse { status: 201, sealed_body: b"sealed".to_vec() };
    store.complete_idempotency(account, "k", mine, START, &response).await.unwrap();
    let completed = Claim::Completed { fingerprint: mine, response: response.clone() };
    assert_eq!(store.claim_idempotency(account, "k", theirs, START + Duration::hours(23)).await.unwrap(), completed);
    store.release_idempotency(account, "k").await.unwrap();
    assert_eq!(
        store.claim_idempotency(account, "k", mine, START).await.unwrap(),
        completed,
        "a completed key is not released"
    );
    // After 24 hours the key is new again.
    assert_eq!(
        store.claim_idempotency(account, "k", theirs, START + Duration::hours(24)).await.unwrap(),
        Claim::Claimed
    );

    // A claim whose request crashed lapses with its lease.
    assert_eq!(store.claim_idempotency(account, "crashed", mine, START).await.unwrap(), Claim::Claimed);
    let later = START + crate::idempotency::LEASE;
    assert_eq!(store.claim_idempotency(account, "crashed", theirs, later).await.unwrap(), Claim::Claimed);
    // A released claim frees the key at once.
    store.release_idempotency(account, "crashed").await.unwrap();
    assert_eq!(store.claim_idempotency(account, "crashed", mine, later).await.unwrap(), Claim::Claimed);

    assert!(store.purge_idempotency(START + Duration::hours(48)).await.unwrap() >= 2);
    assert_eq!(store.claim_idempotency(account, "crashed", theirs, later).await.unwrap(), Claim::Claimed);
}

pub async fn a_committed_unit_of_work_keeps_everything<S: Store>(store: S) {
    use crate::ports::Outcome;
    let f = fixture(store, Plan::Pro).await;
    let store = f.service.store();
    let key = store
        .atomically(async {
            let key = f.service.create_key(&f.principal, named("in a unit")).await.unwrap().key;
            store.append_audit(&audit_event(Some(f.principal.account_id), 0, "key.create", 77)).await.unwrap();
            Outcome::Commit(key)
        })
        .await
        .unwrap();
    assert!(store.get_key(f.principal.account_id, key.id).await.unwrap().is_some());
    assert_eq!(store.audit_chain(Some(f.principal.account_id), 0, 10).await.unwrap().len(), 1);
}

pub async fn a_rolled_back_unit_of_work_leaves_nothing<S: Store>(store: S) {
    use crate::{idempotency::Claim, ports::Outcome};
    let f = fixture(store, Plan::Pro).await;
    let store = f.service.store();
    let account = f.principal.account_id;
    let kept = f.service.create_key(&f.principal, named("before the unit")).await.unwrap().key;
    let (doomed, hash) = store
        .atomically(async {
            let doomed = f.service.create_key(&f.principal, named("in a unit")).await.unwrap().key;
            f.service.revoke_key(&f.principal, kept.id).await.unwrap();
            store.append_audit(&audit_event(Some(account), 0, "key.create", 78)).await.unwrap();
            assert_eq!(store.claim_idempotency(account, "k", [7; 32], START).await.unwrap(), Claim::Claimed);
            // Inside the unit its writes are there.
            assert!(store.get_key(account, doomed.id).await.unwrap().is_some());
            Outcome::Rollback((doomed.id, doomed.hash))
        })
        .await
        .unwrap();
    assert!(store.get_key(account, doomed).await.unwrap().is_none(), "the unit's new key is gone");
    assert!(store.find_by_hash(&hash).await.unwrap().is_none(), "and cannot be found by its hash");
    let kept = store.get_key(account, kept.id).await.unwrap().unwrap();
    assert!(kept.revoked_at.is_none(), "the unit's revocation is undone");
    assert!(store.audit_chain(Some(account), 0, 10).await.unwrap().is_empty(), "its audit event is gone");
    assert_eq!(
        store.claim_idempotency(account, "k", [8; 32], START).await.unwrap(),
        Claim::Claimed,
        "its idempotency claim is gone"
    );
    assert_eq!(store.count_keys(account, START).await.unwrap().active, 1);
}

pub async fn usage_is_counted_per_key_and_day<S: Store>(store: S) {
    use crate::{usage::UsageRecord, verdict::VerifyCode};
    let f = fixture(store, Plan::Pro).await;
    let store = f.service.store();
    let account = f.principal.account_id;
    let key = f.service.create_key(&f.principal, named("metered")).await.unwrap().key;
    let record = |seconds: i64, outcome: VerifyCode, us: Option<u32>| UsageRecord {
        key_id: Some(key.id),
        account_id: account,
        ts: START + Duration::seconds(seconds),
        endpoint: Some("/servers".into()),
        method: Some("GET".into()),
        status_code: None,
        response_time_us: us,
        ip: Some("203.0.113.9".parse().unwrap()),
        outcome: Some(outcome),
        quota_spent: None,
    };
    // Two days: the last second of 1 January and the first of the 2nd.
    let batch = [
        record(10, VerifyCode::Valid, Some(4_000)),
        record(20, VerifyCode::Valid, Some(6_500)),
        record(30, VerifyCode::RateLimited, None),
        record(86_400, VerifyCode::Valid, None),
    ];
    // A verification that found no key: the account's, under no key.
    let unknown = UsageRecord { key_id: None, ..record(40, VerifyCode::NotFound, Some(1_500)) };
    store.record_usage(&batch[..3]).await.unwrap();
    store.record_usage(&[batch[3].clone(), unknown]).await.unwrap();
    let stored = store.get_key(account, key.id).await.unwrap().unwrap();
    assert_eq!(stored.usage_count, 4);
    assert_eq!(stored.last_used_at, Some(START + Duration::seconds(86_400)));

    let next_day = START + Duration::seconds(90_000);
    let summary = store.usage_summary(account, key.id, next_day).await.unwrap();
    assert_eq!((summary.requests_today, summary.requests_this_month), (1, 4));
    let mut last_days = vec![0; 30];
    (last_days[28], last_days[29]) = (3, 1);
    assert_eq!(summary.last_days, last_days, "the last 30 days, oldest first, today last");
    let records = store.key_usage(account, key.id, (None, None), None, 10).await.unwrap();
    assert_eq!(records.len(), 4);
    assert_eq!(records[0].record, batch[3], "newest first, whole");
    let older = store.key_usage(account, key.id, (None, None), Some(records[1].position), 10).await.unwrap();
    assert_eq!(older.len(), 2);
    let window = store.key_usage(
        account,
        key.id,
        (Some(START + Duration::seconds(15)), Some(START + Duration::seconds(40))),
        None,
        10,
    );
    assert_eq!(window.await.unwrap().len(), 2);

    let stats = store.account_stats(account, next_day).await.unwrap();
    assert_eq!((stats.verifications_total, stats.verifications_today), (5, 1), "the failed lookup counts");
    assert_eq!(stats.by_code.get("VALID"), Some(&3));
    assert_eq!(stats.by_code.get("RATE_LIMITED"), Some(&1));
    assert_eq!(stats.by_code.get("NOT_FOUND"), Some(&1));
    assert!((stats.success_rate - 0.6).abs() < 1e-9);
    assert_eq!(stats.avg_response_time_ms, Some(4.0), "(4 + 6.5 + 1.5) ms / 3: kept to the microsecond");
    // Another account sees nothing of it.
    let other = fixture(store.clone(), Plan::Pro).await;
    assert_eq!(store.usage_summary(other.principal.account_id, key.id, next_day).await.unwrap().requests_this_month, 0);
    assert_eq!(store.account_stats(other.principal.account_id, next_day).await.unwrap().verifications_total, 0);

    // Records that share a microsecond are paged without loss or repetition.
    let same_time: Vec<UsageRecord> = (0..5).map(|_| record(50, VerifyCode::Valid, None)).collect();
    store.record_usage(&same_time[..2]).await.unwrap();
    store.record_usage(&same_time[2..]).await.unwrap();
    let window = (Some(START + Duration::seconds(50)), Some(START + Duration::seconds(51)));
    let (mut seen, mut before) = (Vec::new(), None);
    loop {
        let page = store.key_usage(account, key.id, window, before, 2).await.unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.position);
        seen.extend(page.iter().map(|e| e.position));
    }
    assert_eq!(seen.len(), 5, "every record once: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "strictly newest first: {seen:?}");

    // The purge drops records before a day; counts stay.
    store.purge_usage(START + Duration::days(1)).await.unwrap();
    assert_eq!(store.key_usage(account, key.id, (None, None), None, 10).await.unwrap().len(), 1);
    assert_eq!(store.get_key(account, key.id).await.unwrap().unwrap().usage_count, 9, "counts stay");
    assert_eq!(store.usage_summary(account, key.id, next_day).await.unwrap().requests_this_month, 9, "4 + the 5 above");
    let stats = store.account_stats(account, next_day).await.unwrap();
    assert_eq!(stats.verifications_total, 1, "the statistics count the records still kept");
    assert_eq!(stats.by_code.get("RATE_LIMITED"), None);
}

pub async fn the_most_used_keys_are_those_of_the_last_30_days<S: Store>(store: S) {
    use crate::{
        usage::{KeyUse, TOP_KEYS, UsageRecord},
        verdict::VerifyCode,
    };
    let f = fixture(store, Plan::Pro).await;
    let store = f.service.store();
    let account = f.principal.account_id;
    let mut keys = Vec::new();
    for n in 0..TOP_KEYS + 2 {
        keys.push(f.service.create_key(&f.principal, named(&format!("key {n}"))).await.unwrap().key);
    }
    let used = |key: &crate::Key, days_ago: i64, times: usize| -> Vec<UsageRecord> {
        (0..times)
            .map(|_| UsageRecord {
                key_id: Some(key.id),
                account_id: account,
                ts: START - Duration::days(days_ago),
                endpoint: None,
                method: None,
                status_code: None,
                response_time_us: None,
                ip: None,
                outcome: Some(VerifyCode::Valid),
                quota_spent: None,
            })
            .collect()
    };
    // Key 0 was the most used, but 30 days ago: outside the window (today and the 29 before).
    let mut batch = used(&keys[0], 30, 50);
    batch.extend(used(&keys[0], 29, 1));
    for (n, key) in keys.iter().enumerate().skip(1) {
        batch.extend(used(key, 3, n + 1));
    }
    batch.extend(used(&keys[1], 0, 5)); // key 1: 2 + 5 = 7, as key 6 has
    store.record_usage(&batch).await.unwrap();
    // An account key's calls and another account's keys do not count.
    let other = fixture(store.clone(), Plan::Pro).await;
    let theirs = other.service.create_key(&other.principal, named("theirs")).await.unwrap().key;
    let mut foreign = used(&theirs, 0, 100);
    for record in &mut foreign {
        record.account_id = other.principal.account_id;
    }
    store.record_usage(&foreign).await.unwrap();
    let crate::key_service::Via::Key { id: account_key, .. } = f.principal.via else { unreachable!() };
    let account_key = store.get_key(account, account_key).await.unwrap().unwrap();
    store.record_usage(&used(&account_key, 0, 100)).await.unwrap();

    let top = store.account_stats(account, START).await.unwrap().top_keys;
    let tied = if keys[1].id < keys[6].id { [keys[1].id, keys[6].id] } else { [keys[6].id, keys[1].id] };
    let expected = vec![
        KeyUse { key_id: tied[0], requests: 7 },
        KeyUse { key_id: tied[1], requests: 7 },
        KeyUse { key_id: keys[5].id, requests: 6 },
        KeyUse { key_id: keys[4].id, requests: 5 },
        KeyUse { key_id: keys[3].id, requests: 4 },
    ];
    assert_eq!(top, expected, "the most requests in the last 30 days first, ties by id, at most {TOP_KEYS}");
    let theirs_top = store.account_stats(other.principal.account_id, START).await.unwrap().top_keys;
    assert_eq!(theirs_top, vec![KeyUse { key_id: theirs.id, requests: 100 }]);
}

/// The usage flush keeps each key's quota balance: what a ledger without one of its own
/// starts from (crate::quota).
pub async fn quota_spends_come_off_the_stored_balance<S: Store>(store: S) {
    use crate::{
        quota::{Quota, QuotaBalance, QuotaSpend, Refill, RefillInterval},
        usage::UsageRecord,
        verdict::VerifyCode,
    };
    let f = fixture(store, Plan::Pro).await;
    let store = f.service.store();
    let account = f.principal.account_id;
    let quota = Quota { remaining: 100, refill: Some(Refill { amount: 500, interval: RefillInterval::Day }) };
    let new = NewKey { name: "metered".into(), quota: Some(quota), ..NewKey::default() };
    let key = f.service.create_key(&f.principal, new).await.unwrap().key;
    assert_eq!(key.quota_balance, None, "nothing spent yet");
    let spent = |at: OffsetDateTime, credits: u64| UsageRecord {
        key_id: Some(key.id),
        account_id: account,
        ts: at,
        endpoint: None,
        method: None,
        status_code: None,
        response_time_us: None,
        ip: None,
        outcome: Some(VerifyCode::Valid),
        quota_spent: Some(QuotaSpend::of(&quota, credits, at)),
    };
    let balance = async || store.get_key(account, key.id).await.unwrap().unwrap().quota_balance.map(|b| b.remaining);
    store.record_usage(&[spent(START, 30), spent(START, 5)]).await.unwrap();
    assert_eq!(balance().await, Some(65));
    store.record_usage(&[spent(START, 65)]).await.unwrap();
    assert_eq!(balance().await, Some(0), "spent");
    // The next day starts from the refill; a late spend of the day before changes nothing.
    let tomorrow = START + Duration::days(1);
    store.record_usage(&[spent(tomorrow, 1)]).await.unwrap();
    assert_eq!(balance().await, Some(499));
    store.record_usage(&[spent(START, 7)]).await.unwrap();
    assert_eq!(balance().await, Some(499));
    // A record without spends leaves it alone; a new configuration starts from its balance.
    store.record_usage(&[UsageRecord { quota_spent: None, ..spent(tomorrow, 1) }]).await.unwrap();
    assert_eq!(balance().await, Some(499));
    let repriced = Quota { remaining: 10, refill: None };
    let spend = QuotaSpend::of(&repriced, 4, tomorrow);
    store.record_usage(&[UsageRecord { quota_spent: Some(spend), ..spent(tomorrow, 1) }]).await.unwrap();
    let stored = store.get_key(account, key.id).await.unwrap().unwrap().quota_balance;
    assert_eq!(stored, Some(QuotaBalance { fingerprint: repriced.fingerprint(), period: 0, remaining: 6 }));
    // The verification view carries it, for the ledger.
    let found = store.find_by_hash(&key.hash).await.unwrap().unwrap();
    assert_eq!(found.quota_balance(), stored.as_ref());
}
