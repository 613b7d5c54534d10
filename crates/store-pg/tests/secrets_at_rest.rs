//! Webhook signing secrets sealed at rest (issue #29): with `KEYWARD_SECRET`, a dump of
//! the database holds no usable secret — each is sealed, bound to its row and column — and
//! what was written before, in plaintext or under the previous secret, is sealed again.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::{process::Command, sync::Arc};

use keyward_domain::{
    ManualClock, Plan, SeededRandom,
    at_rest::AtRest,
    key_service::{DomainConfig, KeyService, NewWebhook, Principal},
    ports::WebhookStore,
    webhook::WebhookSecret,
};
use keyward_store_pg::{PgStore, testing::TestDatabase};
use time::macros::datetime;

const CURRENT: [u8; 32] = [0x5a; 32];
const PREVIOUS: [u8; 32] = [0x17; 32];

/// The `secret` column of every endpoint, in hex, as a dump shows it.
fn dumped(db: &TestDatabase) -> Vec<String> {
    let out = Command::new("psql")
        .args([db.url(), "-Atc", "SELECT encode(secret, 'hex') FROM webhook_endpoints ORDER BY id"])
        .output()
        .expect("psql, PostgreSQL's client, is needed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

/// An account (drawn from `seed`) with an endpoint at `url`, made through the use cases.
async fn endpoint_made_through(
    store: PgStore,
    url: &str,
    seed: u64,
) -> (KeyService<PgStore>, Principal, WebhookSecret) {
    let clock = Arc::new(ManualClock::new(datetime!(2026-03-01 12:00 UTC)));
    let service = KeyService::new(store, clock, Arc::new(SeededRandom::new(seed)), Arc::new(DomainConfig::default()));
    let (_, issued) = service.create_account("Acme", Plan::Pro, true).await.unwrap();
    let principal = Principal::for_key(&issued.unwrap().key);
    let input = NewWebhook { url: url.into(), enabled: true, ..NewWebhook::default() };
    let made = service.create_webhook(&principal, input).await.unwrap();
    (service, principal, made.secret)
}

#[tokio::test]
async fn a_dump_holds_no_usable_webhook_secret() {
    let db = TestDatabase::new().await;
    let sealed = db.store().with_secrets_at_rest(AtRest::new(&CURRENT, None));
    let (service, principal, secret) = endpoint_made_through(sealed.clone(), "https://a.example.com/hook", 1).await;
    let raw = hex_of_secret(&secret);
    let dump = dumped(&db);
    assert_eq!(dump.len(), 1);
    assert!(!dump[0].contains(&raw), "the secret is in the dump: {}", dump[0]);
    assert!(dump[0].len() > raw.len(), "sealed: nonce and tag besides the secret");

    // Read back, it is the secret, for the service and for a delivery's signature.
    let listed = service.list_webhooks(&principal).await.unwrap();
    assert_eq!(listed[0].secret.expose(), secret.expose());
    // A rotation seals the new secret and the retiring one.
    let rotated = service.rotate_webhook_secret(&principal, listed[0].id, None).await.unwrap();
    let endpoint = sealed.get_webhook(principal.account_id, listed[0].id).await.unwrap().unwrap();
    assert_eq!(endpoint.secret.expose(), rotated.secret.expose());
    assert_eq!(endpoint.previous_secret.unwrap().secret.expose(), secret.expose());
    assert!(!dumped(&db)[0].contains(&hex_of_secret(&rotated.secret)));

    // Another KEYWARD_SECRET, or none, opens nothing: an error, not a wrong secret.
    let other = db.store().with_secrets_at_rest(AtRest::new(&[0x99; 32], None));
    assert!(other.get_webhook(principal.account_id, listed[0].id).await.is_err());
    assert!(db.store().get_webhook(principal.account_id, listed[0].id).await.is_err());

    // A sealed secret copied onto another endpoint's row does not open there.
    let (_, second, _) = endpoint_made_through(sealed.clone(), "https://b.example.com/hook", 2).await;
    let copied = Command::new("psql")
        .args([
            db.url(),
            "-Atc",
            &format!(
                "UPDATE webhook_endpoints SET secret = (SELECT secret FROM webhook_endpoints WHERE account_id = '{}') \
                 WHERE account_id = '{}'",
                principal.account_id.as_uuid(),
                second.account_id.as_uuid()
            ),
        ])
        .status()
        .unwrap();
    assert!(copied.success());
    assert!(sealed.list_webhooks(second.account_id).await.is_err(), "a secret moved to another row opened");
}

#[tokio::test]
async fn secrets_written_before_are_sealed_and_a_rotated_keyward_secret_reseals() {
    let db = TestDatabase::new().await;
    // Written before sealing was configured: in plaintext.
    let (_, principal, secret) = endpoint_made_through(db.store(), "https://a.example.com/hook", 3).await;
    assert!(dumped(&db)[0].contains(&hex_of_secret(&secret)), "the plaintext of before");

    // KEYWARD_SECRET set: the pass at start seals it; the endpoint reads the same.
    let sealed = db.store().with_secrets_at_rest(AtRest::new(&PREVIOUS, None));
    assert_eq!(sealed.seal_webhook_secrets().await.unwrap(), 1);
    assert_eq!(sealed.seal_webhook_secrets().await.unwrap(), 0, "once");
    assert!(!dumped(&db)[0].contains(&hex_of_secret(&secret)));
    let before = dumped(&db);

    // KEYWARD_SECRET rotated, the old one as KEYWARD_SECRET_PREVIOUS: it opens, and the
    // pass seals it again under the new one, after which the old secret is not needed.
    let rotated = db.store().with_secrets_at_rest(AtRest::new(&CURRENT, Some(&PREVIOUS)));
    let list = rotated.list_webhooks(principal.account_id).await.unwrap();
    assert_eq!(list[0].secret.expose(), secret.expose());
    assert_eq!(rotated.seal_webhook_secrets().await.unwrap(), 1);
    assert_ne!(dumped(&db), before);
    let only_new = db.store().with_secrets_at_rest(AtRest::new(&CURRENT, None));
    assert_eq!(only_new.list_webhooks(principal.account_id).await.unwrap()[0].secret.expose(), secret.expose());
    // The pass refuses what opens with neither key, and writes nothing.
    let stranger = db.store().with_secrets_at_rest(AtRest::new(&[0x42; 32], None));
    let after = dumped(&db);
    assert!(stranger.seal_webhook_secrets().await.is_err());
    assert_eq!(dumped(&db), after);
}

/// The hex of a secret's bytes, as a dump would show them unsealed.
fn hex_of_secret(secret: &WebhookSecret) -> String {
    secret.bytes().iter().map(|b| format!("{b:02x}")).collect()
}
