//! Leak reports and self-revocation through the use cases: the keyspace's policy is
//! applied, the change and its audit event are stored together, and a report that changes
//! nothing (a repeat, a string that is no key) writes nothing.

use super::*;
use crate::{
    audit::{AuditFilter, RequestContext},
    key_service::{LeakFinding, LeakReporter},
    keyspace::LeakPolicy,
};

fn github(url: &str) -> LeakReporter {
    LeakReporter::Scanner { name: "github", source: Some("content".into()), url: Some(url.into()) }
}

fn from(ip: &str) -> RequestContext {
    RequestContext { ip: Some(ip.parse().unwrap()), user_agent: None, request_id: None }
}

async fn events<S: Store>(f: &Fixture<S>, action: &str) -> Vec<crate::audit::AuditEvent> {
    let filter = AuditFilter { action: Some(action.into()), ..AuditFilter::default() };
    let records = f.service.store().list_audit(f.principal.account_id, &filter, 100, None).await.unwrap();
    records.into_iter().map(|r| r.event).collect()
}

pub async fn leak_reports_follow_the_keyspace_policy<S: Store>(store: S) {
    let f = fixture(store, Plan::Pro).await;
    let space = |name: &str, policy| NewKeyspace {
        name: name.into(),
        prefix: Some(format!("lk_{name}")),
        leak_policy: Some(policy),
        ..NewKeyspace::default()
    };
    let notify = f.service.create_keyspace(&f.principal, space("notify", LeakPolicy::Notify)).await.unwrap();
    let disable = f.service.create_keyspace(&f.principal, space("disable", LeakPolicy::Disable)).await.unwrap();
    let stored = f.service.store().get_keyspace(f.principal.account_id, disable.id).await.unwrap().unwrap();
    assert_eq!(stored.leak_policy, Some(LeakPolicy::Disable), "the policy is stored");
    let issue = async |keyspace: Option<_>, environment| {
        let input = NewKey { keyspace_id: keyspace, environment: Some(environment), ..named("k") };
        f.service.create_key(&f.principal, input).await.unwrap()
    };
    let live = issue(None, Environment::Live).await;
    let test = issue(None, Environment::Test).await;
    let in_notify = issue(Some(notify.id), Environment::Live).await;
    let in_disable = issue(Some(disable.id), Environment::Live).await;
    let context = from("140.82.115.1");
    f.clock.advance(Duration::seconds(5));
    let now = START + Duration::seconds(5);
    let url = "https://github.com/octo/app/blob/abc/config.yml";
    let report = async |issued: &crate::key_service::IssuedKey| {
        f.service.report_leak(issued.plaintext.expose_secret(), &github(url), &context).await.unwrap()
    };
    let stored = async |issued: &crate::key_service::IssuedKey| {
        f.service.store().get_key(f.principal.account_id, issued.key.id).await.unwrap().unwrap()
    };

    // Default policy, live key: revoked, and the record says when and where.
    assert_eq!(report(&live).await, LeakFinding::Key);
    let key = stored(&live).await;
    assert_eq!((key.revoked_at, key.leaked_at, key.leak_source.as_deref()), (Some(now), Some(now), Some(url)));
    let found = f.service.store().find_by_hash(&KeyHash::blake3(live.plaintext.expose_secret())).await.unwrap();
    assert_eq!(found.unwrap().status(now), KeyStatus::Revoked, "verification sees the revocation");
    // Default policy, test key: recorded, still working.
    report(&test).await;
    let key = stored(&test).await;
    assert_eq!((key.revoked_at, key.is_active, key.leaked_at), (None, true, Some(now)));
    // Keyspace policies.
    report(&in_notify).await;
    let key = stored(&in_notify).await;
    assert_eq!((key.revoked_at, key.is_active, key.leaked_at), (None, true, Some(now)));
    report(&in_disable).await;
    let key = stored(&in_disable).await;
    assert_eq!((key.revoked_at, key.is_active, key.leaked_at), (None, false, Some(now)));

    let leaks = events(&f, "key.leak").await;
    assert_eq!(leaks.len(), 4, "one event per key handled");
    let event = leaks.iter().find(|e| e.resource_id.as_deref() == Some(&live.key.id.to_string())).unwrap();
    assert_eq!(event.metadata["url"], url);
    assert_eq!(event.metadata["policy"], "revoke");
    assert_eq!(event.metadata["reporter"], "github");
    assert_eq!(event.context.ip, context.ip);
    assert_eq!(event.actor, crate::key::Actor::System);

    // The same report again changes nothing and writes nothing; the first source stays.
    f.clock.advance(Duration::seconds(5));
    assert_eq!(report(&live).await, LeakFinding::Key);
    f.service.report_leak(in_notify.plaintext.expose_secret(), &github("https://elsewhere"), &context).await.unwrap();
    assert_eq!(stored(&in_notify).await.leak_source.as_deref(), Some(url));
    assert_eq!(events(&f, "key.leak").await.len(), 4);

    // Strings that are no key of ours: nothing is written.
    let mut broken = live.plaintext.expose_secret().to_owned();
    let last = broken.pop().unwrap();
    broken.push(if last == 'a' { 'b' } else { 'a' });
    let unknown = crate::key_format::generate(
        &crate::key_format::KeyPrefix::new("kw").unwrap(),
        Environment::Live,
        &SeededRandom::new(99),
    );
    for token in ["", "not a key", broken.as_str(), unknown.expose_secret()] {
        assert_eq!(
            f.service.report_leak(token, &github(url), &context).await.unwrap(),
            LeakFinding::NotAKey,
            "{token}"
        );
    }
    assert_eq!(events(&f, "key.leak").await.len(), 4);

    // A public report revokes whatever the policy: whoever can show the key can use it.
    f.service
        .report_leak(in_notify.plaintext.expose_secret(), &LeakReporter::Public, &from("198.51.100.9"))
        .await
        .unwrap();
    let key = stored(&in_notify).await;
    assert!(key.revoked_at.is_some());
    let leaks = events(&f, "key.leak").await;
    assert_eq!(leaks.len(), 5);
    assert_eq!(leaks[0].context.ip, Some("198.51.100.9".parse().unwrap()), "the reporter's address is kept");
    assert_eq!(leaks[0].metadata["reporter"], "public");
}

pub async fn a_key_revokes_itself<S: Store>(store: S) {
    let f = fixture(store, Plan::Pro).await;
    let issued = f.service.create_key(&f.principal, named("k")).await.unwrap();
    let limiter = Unlimited;
    let context = from("203.0.113.4");
    // Disabled is no obstacle: the holder may still end it.
    let patch = KeyPatch { is_active: Some(false), ..Default::default() };
    f.service.update_key(&f.principal, issued.key.id, patch).await.unwrap();
    f.clock.advance(Duration::seconds(3));
    // Another account named as the key's owner (HTTP Basic): refused, nothing changes.
    let other = crate::id::AccountId::generate(START, &SeededRandom::new(5));
    let refused = f.service.self_revoke(&issued.plaintext, Some(other), &context, &limiter).await;
    assert!(matches!(refused, Err(crate::error::AuthError::Unauthorized)));
    let revoked = f.service.self_revoke(&issued.plaintext, None, &context, &limiter).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(START + Duration::seconds(3)));
    let stored = f.service.store().get_key(f.principal.account_id, issued.key.id).await.unwrap().unwrap();
    assert_eq!(stored.revoked_at, revoked.revoked_at);
    let events = events(&f, "key.self_revoke").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor, crate::key::Actor::Key(issued.key.id));
    assert_eq!(events[0].context.ip, context.ip);
    // Once revoked, the key is no credential, not even for this.
    let again = f.service.self_revoke(&issued.plaintext, None, &context, &limiter).await;
    assert!(matches!(again, Err(crate::error::AuthError::Unauthorized)));
    let unknown = crate::secret::PlaintextKey::new("kw_live_nothing".into());
    assert!(matches!(
        f.service.self_revoke(&unknown, None, &context, &limiter).await,
        Err(crate::error::AuthError::Unauthorized)
    ));
}

/// A signed report's digest, once processed, is remembered (recording it again changes
/// nothing), and only that digest.
pub async fn a_processed_report_is_remembered_once<S: Store>(store: S) {
    let (digest, other) = ([7u8; 32], [8u8; 32]);
    assert!(!store.report_processed(&digest).await.unwrap());
    store.remember_report(&digest, START).await.unwrap();
    store.remember_report(&digest, START + Duration::seconds(5)).await.unwrap();
    assert!(store.report_processed(&digest).await.unwrap());
    assert!(!store.report_processed(&other).await.unwrap());
}
