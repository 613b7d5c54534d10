//! Webhooks through the use cases: a key change and its outbox message commit together,
//! fan out to the endpoints that want them, are claimed by one worker at a time, retried
//! on failure, and an endpoint that fails for days is disabled with an audit event.

use super::*;
use crate::{
    audit::AuditFilter,
    key_service::{NewWebhook, SendResult, WebhookPatch, WebhookRequest, WebhookSender},
    ports::Outcome,
    webhook::{Disabled, EventType, Fairness, signing},
};

/// A receiver that answers each request with the next of `answers` (the last one
/// repeated) and keeps what it was sent.
struct Receiver {
    answers: std::sync::Mutex<Vec<SendResult>>,
    received: std::sync::Mutex<Vec<WebhookRequest>>,
}

impl Receiver {
    fn answering(answers: Vec<SendResult>) -> Self {
        Self { answers: std::sync::Mutex::new(answers), received: std::sync::Mutex::default() }
    }

    fn received(&self) -> Vec<WebhookRequest> {
        self.received.lock().unwrap().clone()
    }
}

impl WebhookSender for Receiver {
    async fn send(&self, request: WebhookRequest) -> SendResult {
        self.received.lock().unwrap().push(request);
        let mut answers = self.answers.lock().unwrap();
        if answers.len() > 1 { answers.remove(0) } else { answers[0].clone() }
    }
}

fn ok() -> SendResult {
    SendResult::Answered { status: 204, body: String::new() }
}

fn endpoint(url: &str, events: &[&str]) -> NewWebhook {
    NewWebhook {
        url: url.into(),
        description: None,
        event_types: events.iter().map(|e| (*e).to_owned()).collect(),
        enabled: true,
    }
}

fn types(received: &[WebhookRequest]) -> Vec<String> {
    received
        .iter()
        .map(|r| serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["type"].as_str().unwrap().to_owned())
        .collect()
}

pub async fn key_events_reach_the_endpoints_that_want_them<S: Store>(store: S) {
    let f = fixture(store, Plan::Pro).await;
    let all = f.service.create_webhook(&f.principal, endpoint("https://a.example.com/hook", &[])).await.unwrap();
    let revocations =
        f.service.create_webhook(&f.principal, endpoint("https://b.example.com/hook", &["key.revoked"])).await.unwrap();
    let off = NewWebhook { enabled: false, ..endpoint("https://c.example.com/hook", &[]) };
    f.service.create_webhook(&f.principal, off).await.unwrap();
    let bad = f.service.create_webhook(&f.principal, endpoint("https://a.example.com/", &["key.exploded"])).await;
    assert!(matches!(bad, Err(crate::error::ManageError::Invalid(_))), "{bad:?}");
    let private = f.service.create_webhook(&f.principal, endpoint("http://169.254.169.254/", &[])).await;
    assert!(matches!(private, Err(crate::error::ManageError::Invalid(_))), "{private:?}");

    // Another account's endpoints hear nothing of this one's keys.
    let other = fixture(f.service.store().clone(), Plan::Pro).await;
    other.service.create_webhook(&other.principal, endpoint("https://o.example.com/", &[])).await.unwrap();

    let key = f.service.create_key(&f.principal, named("k")).await.unwrap().key;
    let patch = KeyPatch { name: Some("renamed".into()), ..KeyPatch::default() };
    f.service.update_key(&f.principal, key.id, patch).await.unwrap();
    f.service.revoke_key(&f.principal, key.id).await.unwrap();
    f.service.revoke_key(&f.principal, key.id).await.unwrap();

    let receiver = Receiver::answering(vec![ok()]);
    assert_eq!(f.service.deliver_due(&receiver, 100).await.unwrap(), 4);
    let received = receiver.received();
    let to =
        |e: &crate::webhook::WebhookEndpoint| received.iter().filter(|r| r.url == e.url).cloned().collect::<Vec<_>>();
    let mut all_types = types(&to(&all));
    all_types.sort();
    assert_eq!(all_types, ["key.created", "key.revoked", "key.updated"], "a repeated revocation publishes nothing");
    assert_eq!(types(&to(&revocations)), ["key.revoked"]);
    assert_eq!(f.service.deliver_due(&receiver, 100).await.unwrap(), 0, "delivered once");

    // Each is signed with the endpoint's secret over id, timestamp and body.
    for request in &received {
        let secret = if request.url == all.url { &all.secret } else { &revocations.secret };
        let id = request.message_id.to_string();
        assert_eq!(request.signature, signing::sign(secret, &id, request.timestamp, request.body.as_bytes()));
        let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(body["data"]["id"], key.id.to_string());
        assert!(!request.body.contains(&hex::encode(&key.hash.to_bytes()[1..])), "never the hash");
    }
}

pub async fn an_event_commits_with_its_change_or_not_at_all<S: Store>(store: S) {
    let f = fixture(store, Plan::Pro).await;
    f.service.create_webhook(&f.principal, endpoint("https://a.example.com/hook", &[])).await.unwrap();
    let store = f.service.store().clone();
    let rolled_back = store
        .atomically(async {
            let issued = f.service.create_key(&f.principal, named("gone")).await;
            Outcome::Rollback(issued.map(|i| i.key.id))
        })
        .await
        .unwrap()
        .unwrap();
    assert!(f.service.get_key(&f.principal, rolled_back).await.is_err(), "the key was rolled back");
    let receiver = Receiver::answering(vec![ok()]);
    assert_eq!(f.service.deliver_due(&receiver, 100).await.unwrap(), 0, "and its event with it");
    store
        .atomically(async {
            let issued = f.service.create_key(&f.principal, named("kept")).await;
            Outcome::Commit(issued.map(drop))
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f.service.deliver_due(&receiver, 100).await.unwrap(), 1);
}

pub async fn a_claim_is_held_by_one_worker_until_its_lease_ends<S: Store>(store: S) {
    let f = fixture(store, Plan::Pro).await;
    f.service.create_webhook(&f.principal, endpoint("https://a.example.com/hook", &[])).await.unwrap();
    f.service.create_key(&f.principal, named("k")).await.unwrap();
    let store = f.service.store();
    let now = crate::clock::Clock::now(&*f.clock);
    let lease = now + Duration::seconds(60);
    let first = store.claim_deliveries(now, lease, 10, &Fairness::idle(10)).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].message.event_type, EventType::KeyCreated);
    assert!(store.claim_deliveries(now, lease, 10, &Fairness::idle(10)).await.unwrap().is_empty(), "claimed once");
    // Its worker died: the delivery is due again when the lease ends, not lost.
    let again = store.claim_deliveries(lease, lease + Duration::seconds(60), 10, &Fairness::idle(10)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message.id, first[0].message.id);
}

/// One account's backlog does not hold every slot: a claim takes each account's earliest
/// first, round-robin, and no account past its room (what its deliveries in flight leave).
pub async fn a_claim_shares_the_worker_between_accounts<S: Store>(store: S) {
    let f = fixture(store, Plan::Pro).await;
    // Acme: three endpoints, four keys made first — twelve deliveries due before Umbrella's.
    for n in 0..3 {
        let url = format!("https://slow{n}.acme.example.com/hook");
        f.service.create_webhook(&f.principal, endpoint(&url, &[])).await.unwrap();
    }
    for n in 0..4 {
        f.service.create_key(&f.principal, named(&format!("acme {n}"))).await.unwrap();
    }
    f.clock.advance(Duration::seconds(1));
    let (umbrella, issued) = f.service.create_account("Umbrella", Plan::Pro, true).await.unwrap();
    let other = Principal::for_key(&issued.unwrap().key);
    f.service.create_webhook(&other, endpoint("https://umbrella.example.com/hook", &[])).await.unwrap();
    f.service.create_key(&other, named("umbrella")).await.unwrap();
    let acme = f.principal.account_id;
    let store = f.service.store();
    let now = crate::clock::Clock::now(&*f.clock);
    let lease = now + Duration::seconds(60);
    // Which accounts a claim took, in a stable order (a claim's own order is the store's).
    let accounts = |claimed: &[crate::webhook::ClaimedDelivery]| -> Vec<AccountId> {
        let mut accounts: Vec<AccountId> = claimed.iter().map(|c| c.endpoint.account_id).collect();
        accounts.sort_by_key(|a| (*a != acme, a.to_string()));
        accounts
    };

    // Three slots, two per account: Umbrella's, though due after all of Acme's, and two of
    // Acme's.
    let first = store.claim_deliveries(now, lease, 3, &Fairness::idle(2)).await.unwrap();
    assert_eq!(accounts(&first), vec![acme, acme, umbrella.id]);
    // Acme has its two in flight: nothing more of its is claimed, however much is due.
    let busy = Fairness { per_account: 2, in_flight: vec![(acme, 2), (umbrella.id, 1)] };
    assert!(store.claim_deliveries(now, lease, 10, &busy).await.unwrap().is_empty());
    // One of them done: one more of Acme's.
    let eased = Fairness { per_account: 2, in_flight: vec![(acme, 1)] };
    assert_eq!(accounts(&store.claim_deliveries(now, lease, 10, &eased).await.unwrap()), vec![acme]);
    // Without a cap, the rest of Acme's backlog.
    assert_eq!(store.claim_deliveries(now, lease, 100, &Fairness::idle(100)).await.unwrap().len(), 9);
}

pub async fn failures_are_retried_listed_and_end_in_a_disabled_endpoint<S: Store>(store: S) {
    let f = fixture(store, Plan::Pro).await;
    let hook = f.service.create_webhook(&f.principal, endpoint("https://a.example.com/hook", &[])).await.unwrap();
    f.service.create_key(&f.principal, named("k")).await.unwrap();
    let down = Receiver::answering(vec![SendResult::Answered { status: 503, body: "down for maintenance".into() }]);
    assert_eq!(f.service.deliver_due(&down, 10).await.unwrap(), 1);
    assert_eq!(f.service.deliver_due(&down, 10).await.unwrap(), 0, "not due before its retry");
    let page = f.service.list_webhook_attempts(&f.principal, hook.id, None, 10).await.unwrap();
    assert_eq!(page.attempts.len(), 1);
    let attempt = &page.attempts[0];
    assert_eq!(
        (attempt.status, attempt.succeeded, attempt.response.as_str()),
        (Some(503), false, "down for maintenance")
    );
    let failing = f.service.get_webhook(&f.principal, hook.id).await.unwrap();
    assert_eq!(failing.failing_since, Some(attempt.at));

    // The retry comes after about 5 seconds (with jitter), then after about a minute.
    f.clock.advance(Duration::seconds(7));
    assert_eq!(f.service.deliver_due(&down, 10).await.unwrap(), 1);
    // A manual retry makes it due now.
    f.clock.advance(Duration::seconds(1));
    f.service.retry_webhook_message(&f.principal, hook.id, attempt.message_id).await.unwrap();
    let up = Receiver::answering(vec![ok()]);
    assert_eq!(f.service.deliver_due(&up, 10).await.unwrap(), 1);
    let page = f.service.list_webhook_attempts(&f.principal, hook.id, None, 2).await.unwrap();
    assert!(page.attempts[0].succeeded && page.has_more, "newest first");
    let older = f.service.list_webhook_attempts(&f.principal, hook.id, Some(page.attempts[1].id), 2).await.unwrap();
    assert_eq!((older.attempts.len(), older.has_more), (1, false));
    assert_eq!(f.service.get_webhook(&f.principal, hook.id).await.unwrap().failing_since, None, "a success clears it");

    // Another account can neither list nor retry them.
    let other = fixture(f.service.store().clone(), Plan::Pro).await;
    assert!(other.service.list_webhook_attempts(&other.principal, hook.id, None, 10).await.is_err());
    assert!(other.service.retry_webhook_message(&other.principal, hook.id, attempt.message_id).await.is_err());

    // Failing every delivery for five days disables the endpoint, audited.
    for day in 0..6 {
        f.service.create_key(&f.principal, named(&format!("day {day}"))).await.unwrap();
        f.service.deliver_due(&down, 10).await.unwrap();
        f.clock.advance(Duration::days(1));
    }
    f.service.create_key(&f.principal, named("last")).await.unwrap();
    f.service.deliver_due(&down, 100).await.unwrap();
    let disabled = f.service.get_webhook(&f.principal, hook.id).await.unwrap();
    assert_eq!(disabled.disabled, Some(Disabled::Failing));
    let filter = AuditFilter { action: Some("webhook.disable".into()), ..AuditFilter::default() };
    let events = f.service.store().list_audit(f.principal.account_id, &filter, 10, None).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.resource_id, Some(hook.id.to_string()));
    f.service.create_key(&f.principal, named("unheard")).await.unwrap();
    assert_eq!(f.service.deliver_due(&up, 100).await.unwrap(), 0, "a disabled endpoint receives nothing");
    // Turned on again, it receives what is due, the failures forgotten.
    let on = WebhookPatch { enabled: Some(true), ..WebhookPatch::default() };
    let enabled = f.service.update_webhook(&f.principal, hook.id, on).await.unwrap();
    assert_eq!((enabled.disabled, enabled.failing_since), (None, None));
    assert!(f.service.deliver_due(&up, 100).await.unwrap() > 0);
}

pub async fn a_rotated_secret_signs_beside_the_new_one_for_its_overlap<S: Store>(store: S) {
    let f = fixture(store, Plan::Pro).await;
    let hook = f.service.create_webhook(&f.principal, endpoint("https://a.example.com/hook", &[])).await.unwrap();
    let rotated = f.service.rotate_webhook_secret(&f.principal, hook.id, Some(3600)).await.unwrap();
    assert_ne!(rotated.secret, hook.secret);
    f.service.create_key(&f.principal, named("k")).await.unwrap();
    let receiver = Receiver::answering(vec![ok()]);
    f.service.deliver_due(&receiver, 10).await.unwrap();
    let request = &receiver.received()[0];
    let id = request.message_id.to_string();
    let sign = |secret| signing::sign(secret, &id, request.timestamp, request.body.as_bytes());
    assert_eq!(request.signature, format!("{} {}", sign(&rotated.secret), sign(&hook.secret)));
    // After the overlap, the new secret alone.
    f.clock.advance(Duration::seconds(3601));
    f.service.create_key(&f.principal, named("later")).await.unwrap();
    f.service.deliver_due(&receiver, 10).await.unwrap();
    let later = &receiver.received()[1];
    let id = later.message_id.to_string();
    assert_eq!(later.signature, signing::sign(&rotated.secret, &id, later.timestamp, later.body.as_bytes()));

    // Deleting the endpoint removes its deliveries and attempts.
    f.service.delete_webhook(&f.principal, hook.id).await.unwrap();
    assert!(f.service.get_webhook(&f.principal, hook.id).await.is_err());
    assert!(
        f.service.store().list_attempts(f.principal.account_id, hook.id, None, 10).await.unwrap().attempts.is_empty()
    );
}

pub async fn expiry_and_quota_notices_are_sent_once_per_threshold<S: Store>(store: S) {
    use crate::{
        quota::{Quota, QuotaSpend, Refill, RefillInterval},
        usage::UsageRecord,
        verdict::VerifyCode,
    };
    let f = fixture(store, Plan::Pro).await;
    f.service.create_webhook(&f.principal, endpoint("https://a.example.com/hook", &[])).await.unwrap();
    let expiring = |name: &str, after: Duration| NewKey { expires_at: Some(START + after), ..named(name) };
    let far = f.service.create_key(&f.principal, expiring("in 10 days", Duration::days(10))).await.unwrap().key;
    let soon = f.service.create_key(&f.principal, expiring("in 2 days", Duration::days(2))).await.unwrap().key;
    let sooner = f.service.create_key(&f.principal, expiring("in 12 hours", Duration::hours(12))).await.unwrap().key;
    let revoked = f.service.create_key(&f.principal, expiring("revoked", Duration::hours(12))).await.unwrap().key;
    f.service.revoke_key(&f.principal, revoked.id).await.unwrap();
    let rotated = f.service.create_key(&f.principal, named("rotated")).await.unwrap().key;
    f.service.rotate_key(&f.principal, rotated.id, 3600).await.unwrap();
    let receiver = Receiver::answering(vec![ok()]);
    f.service.deliver_due(&receiver, 100).await.unwrap();
    let announced = |from: usize| {
        receiver.received()[from..]
            .iter()
            .map(|r| serde_json::from_str::<serde_json::Value>(&r.body).unwrap())
            .filter(|b| b["type"] != "key.created" && b["type"] != "key.revoked" && b["type"] != "key.rotated")
            .map(|b| (b["type"].as_str().unwrap().to_owned(), b["data"]["id"].as_str().unwrap().to_owned()))
            .collect::<std::collections::BTreeSet<_>>()
    };
    let expiring_of = |keys: &[&crate::key::Key]| {
        keys.iter().map(|k| ("key.expiring".to_owned(), k.id.to_string())).collect::<std::collections::BTreeSet<_>>()
    };

    // The 7-day lead for the key due in two days, the 1-day lead for the one due in 12
    // hours; not the revoked key, nor the one a rotation ends, nor one due in 10 days.
    let seen = receiver.received().len();
    assert_eq!(f.service.announce_notices().await.unwrap(), 2);
    f.service.deliver_due(&receiver, 100).await.unwrap();
    assert_eq!(announced(seen), expiring_of(&[&soon, &sooner]));
    assert_eq!(f.service.announce_notices().await.unwrap(), 0, "once");

    // A day and a half later the two-day key reaches its 1-day lead; three days later the
    // far one its 7-day lead. A key whose expiry moves is announced again for the new one.
    f.clock.advance(Duration::hours(36));
    let seen = receiver.received().len();
    assert_eq!(f.service.announce_notices().await.unwrap(), 1);
    f.service.deliver_due(&receiver, 100).await.unwrap();
    assert_eq!(announced(seen), expiring_of(&[&soon]));
    f.clock.advance(Duration::hours(36));
    let seen = receiver.received().len();
    assert_eq!(f.service.announce_notices().await.unwrap(), 1);
    f.service.deliver_due(&receiver, 100).await.unwrap();
    assert_eq!(announced(seen), expiring_of(&[&far]));
    let later = KeyPatch { expires_at: Some(Some(START + Duration::days(8))), ..KeyPatch::default() };
    f.service.update_key(&f.principal, far.id, later).await.unwrap();
    assert_eq!(f.service.announce_notices().await.unwrap(), 1, "the new expiry, announced");

    // Quotas: low at 10 % of the refill (50 of 500), exhausted at 0, once per period.
    let quota = Quota { remaining: 500, refill: Some(Refill { amount: 500, interval: RefillInterval::Day }) };
    let metered = f.service.create_key(&f.principal, NewKey { quota: Some(quota), ..named("metered") }).await.unwrap();
    let now = crate::clock::Clock::now(&*f.clock);
    let spend = |credits: u64| UsageRecord {
        key_id: Some(metered.key.id),
        account_id: f.principal.account_id,
        ts: now,
        endpoint: None,
        method: None,
        status_code: None,
        response_time_us: None,
        ip: None,
        outcome: Some(VerifyCode::Valid),
        quota_spent: Some(QuotaSpend::of(&quota, credits, now)),
    };
    let store = f.service.store();
    store.record_usage(&[spend(440)]).await.unwrap();
    assert_eq!(f.service.announce_notices().await.unwrap(), 0, "60 left: not low yet");
    store.record_usage(&[spend(20)]).await.unwrap();
    let seen = receiver.received().len();
    assert_eq!(f.service.announce_notices().await.unwrap(), 1, "40 left: low");
    assert_eq!(f.service.announce_notices().await.unwrap(), 0);
    store.record_usage(&[spend(40)]).await.unwrap();
    assert_eq!(f.service.announce_notices().await.unwrap(), 1, "exhausted");
    assert_eq!(f.service.announce_notices().await.unwrap(), 0);
    f.service.deliver_due(&receiver, 100).await.unwrap();
    let mut quota_events: Vec<(String, u64)> = receiver.received()[seen..]
        .iter()
        .map(|r| serde_json::from_str::<serde_json::Value>(&r.body).unwrap())
        .filter(|b| b["type"].as_str().unwrap().starts_with("quota."))
        .map(|b| (b["type"].as_str().unwrap().to_owned(), b["data"]["quota_remaining"].as_u64().unwrap()))
        .collect();
    // Announced at one instant, delivered in no particular order (webhooks never promise one).
    quota_events.sort();
    assert_eq!(quota_events, [("quota.exhausted".to_owned(), 0), ("quota.low".to_owned(), 40)]);
}
