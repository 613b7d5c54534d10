//! Leak response over HTTP: GitHub's signed reports, public reports, and a key revoking
//! itself — what each changes, what each refuses, and what each gives away (nothing).

use actix_web::{http::Method, test::TestRequest};
use base64::Engine as _;
use keyward_http::{Policies, leaks::GitHubKeys};
use ring::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _},
};
use serde_json::{Value, json};

use crate::helpers::*;

/// A signing key standing in for GitHub's, and the public-keys document naming it.
struct GitHub {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl GitHub {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        Self { pair, rng }
    }

    fn keys(&self) -> GitHubKeys {
        // The SubjectPublicKeyInfo of a P-256 key: a fixed header, then the point.
        let header = "3059301306072a8648ce3d020106082a8648ce3d030107034200";
        let der = [hex::decode(header).unwrap(), self.pair.public_key().as_ref().to_vec()].concat();
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        );
        let document = json!({"public_keys": [{"key_identifier": "gh-1", "key": pem, "is_current": true}]});
        GitHubKeys::from_json(&document.to_string()).unwrap()
    }

    fn sign(&self, body: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.pair.sign(&self.rng, body).unwrap())
    }
}

fn report(body: &[u8], signature: Option<(&str, &str)>) -> TestRequest {
    let mut request = TestRequest::post()
        .uri("/v1/leaks/github")
        .insert_header(("content-type", "application/json"))
        .set_payload(body.to_vec());
    if let Some((id, signature)) = signature {
        request = request
            .insert_header(("Github-Public-Key-Identifier", id))
            .insert_header(("Github-Public-Key-Signature", signature));
    }
    request
}

fn sha256_hex(text: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()))
}

/// The key with its last character changed: the checksum no longer matches.
fn broken(key: &str) -> String {
    let mut broken = key.to_owned();
    let last = broken.pop().unwrap();
    broken.push(if last == 'a' { 'b' } else { 'a' });
    broken
}

async fn github_reports<S: keyward_domain::Store>(app: TestApp<S>, github: GitHub) {
    let url = "https://github.com/octo/app/blob/abc/config.yml";
    let disabling = app.post("/v1/keyspaces", json!({"name": "d", "prefix": "dis", "leak_policy": "disable"})).await;
    assert_eq!(disabling.status.as_u16(), 201, "{:#}", disabling.body);
    assert_eq!(disabling.body["leak_policy"], "disable");
    assert_eq!(disabling.body["leak_pattern"], r"\bdis_(?:live|test)_[0-9A-Za-z]{36}\b");
    let (live_id, live) = app.create_key(json!({"name": "live"})).await;
    let (_, test) = app.create_key(json!({"name": "test", "environment": "test"})).await;
    let (_, disabled) = app.create_key(json!({"name": "d", "keyspace_id": disabling.str("id")})).await;
    let tokens = [live.clone(), test.clone(), disabled.clone(), "hunter2".into(), broken(&live)];
    let body = Value::Array(
        tokens.iter().map(|t| json!({"token": t, "type": "keyward_key", "url": url, "source": "content"})).collect(),
    )
    .to_string();
    let verify = async |key: &str| app.verify(json!({"key": key})).await["code"].as_str().unwrap().to_owned();

    // Unsigned, signed by nobody GitHub names, signed over another body: refused, nothing changes.
    app.send(report(body.as_bytes(), None)).await.assert_error(401, "invalid_signature");
    let signature = github.sign(body.as_bytes());
    app.send(report(body.as_bytes(), Some(("gh-2", &signature)))).await.assert_error(401, "invalid_signature");
    let other = github.sign(b"[]");
    app.send(report(body.as_bytes(), Some(("gh-1", &other)))).await.assert_error(401, "invalid_signature");
    let forger = GitHub::new().sign(body.as_bytes());
    app.send(report(body.as_bytes(), Some(("gh-1", &forger)))).await.assert_error(401, "invalid_signature");
    assert_eq!(verify(&live).await, "VALID");
    assert!(app.get(&format!("/v1/keys/{live_id}")).await.body["leaked_at"].is_null());

    // Signed: a label per token, by its hash, and each key handled by its policy.
    let reply = app.send(report(body.as_bytes(), Some(("gh-1", &signature)))).await;
    assert_eq!(reply.status.as_u16(), 200, "{:#}", reply.body);
    let labels: Vec<(String, String)> = reply
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["token_hash"].as_str().unwrap().to_owned(), l["label"].as_str().unwrap().to_owned()))
        .collect();
    let expected: Vec<(String, String)> = tokens
        .iter()
        .zip(["true_positive", "true_positive", "true_positive", "false_positive", "false_positive"])
        .map(|(t, l)| (sha256_hex(t), l.to_owned()))
        .collect();
    assert_eq!(labels, expected);
    assert_eq!(reply.body[0]["token_type"], "keyward_key");
    assert!(!reply.bytes.windows(live.len()).any(|w| w == live.as_bytes()), "the answer holds no key");
    assert_eq!(verify(&live).await, "REVOKED", "a live key is revoked by default");
    assert_eq!(verify(&test).await, "VALID", "a test key is only recorded by default");
    assert_eq!(verify(&disabled).await, "INACTIVE", "the keyspace's policy disables");
    let record = app.get(&format!("/v1/keys/{live_id}")).await;
    assert_eq!(record.body["leak_source"], url);
    assert_eq!(record.body["leaked_at"], record.body["revoked_at"]);
    let leaks: Vec<_> = app.account_trail().await.into_iter().filter(|r| r.event.action == "key.leak").collect();
    assert_eq!(leaks.len(), 3);
    assert!(leaks.iter().all(|r| r.event.metadata["url"] == url && r.event.metadata["reporter"] == "github"));

    // The same report again: the same labels, nothing new in the trail.
    let again = app.send(report(body.as_bytes(), Some(("gh-1", &signature)))).await;
    assert_eq!(again.body, reply.body);
    let count = app.account_trail().await.into_iter().filter(|r| r.event.action == "key.leak").count();
    assert_eq!(count, 3);

    // The owner turns the disabled key on again; the captured report, replayed (its body
    // and signature as they were, or the signature in its other valid ECDSA form), is
    // answered and changes nothing: GitHub's reports carry no timestamp (issue #29).
    let disabled_id = app.get("/v1/keys").await.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "d")
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .unwrap();
    let enabled = app.patch(&format!("/v1/keys/{disabled_id}"), json!({"is_active": true})).await;
    assert_eq!(enabled.status.as_u16(), 200, "{:#}", enabled.body);
    assert_eq!(verify(&disabled).await, "VALID");
    let replayed = app.send(report(body.as_bytes(), Some(("gh-1", &signature)))).await;
    assert_eq!((replayed.status.as_u16(), &replayed.body), (200, &reply.body));
    let resigned = github.sign(body.as_bytes());
    assert_ne!(resigned, signature, "ECDSA signs anew each time");
    let replayed = app.send(report(body.as_bytes(), Some(("gh-1", &resigned)))).await;
    assert_eq!((replayed.status.as_u16(), &replayed.body), (200, &reply.body));
    assert_eq!(verify(&disabled).await, "VALID", "a replayed report disabled the key again");
    let count = app.account_trail().await.into_iter().filter(|r| r.event.action == "key.leak").count();
    assert_eq!(count, 3);

    // A body that is not a report, correctly signed: refused.
    let junk = br#"{"token": 1}"#;
    let signature = github.sign(junk);
    app.send(report(junk, Some(("gh-1", &signature)))).await.assert_error(400, "invalid_json");
}

mod github_reports_are_signed_and_follow_the_policy {
    use super::*;

    fn policies(github: &GitHub) -> Policies {
        Policies { github_keys: github.keys().into(), ..Policies::default() }
    }

    #[actix_web::test]
    async fn memory() {
        let github = GitHub::new();
        let app = TestApp::with_policies(keyward_store_mem::MemStore::new(), policies(&github)).await;
        github_reports(app, github).await;
    }

    #[actix_web::test]
    async fn postgres() {
        let db = keyward_store_pg::testing::TestDatabase::new().await;
        let github = GitHub::new();
        github_reports(TestApp::with_policies(db.store(), policies(&github)).await, github).await;
        drop(db);
    }
}

both_stores! {
    async fn github_reports_are_refused_when_no_key_is_configured(app) {
        let body = br#"[{"token":"x","type":"t","url":"u","source":"content"}]"#;
        app.send(report(body, Some(("gh-1", "MEUCIQ==")))).await.assert_error(404, "not_found");
    }

    async fn public_reports_revoke_live_keys_and_say_nothing(app) {
        let (id, found) = app.create_key(json!({"name": "found"})).await;
        let (_, kept) = app.create_key(json!({"name": "kept"})).await;
        let public = |keys: Value, peer: &'static str| {
            let request = TestRequest::post().uri("/v1/leaks/revoke").set_json(json!({"keys": keys}));
            app.send_from(request, peer)
        };
        // A report of junk and a report holding a live key get the same answer.
        let junk = public(json!(["hunter2", broken(&kept), "kw_live_nothing"]), "198.51.100.7:1").await;
        let real = public(json!(["hunter2", found, broken(&kept)]), "198.51.100.7:1").await;
        assert_eq!(junk.status.as_u16(), 202, "{:#}", junk.body);
        assert_eq!((real.status, &real.bytes), (junk.status, &junk.bytes));
        assert_eq!(real.body, json!({"received": 3}));
        assert_eq!(app.verify(json!({"key": found})).await["code"], "REVOKED");
        assert_eq!(app.verify(json!({"key": kept})).await["code"], "VALID");
        let record = app.get(&format!("/v1/keys/{id}")).await;
        assert_eq!(record.body["leak_source"], "public");
        let leaks: Vec<_> = app.account_trail().await.into_iter().filter(|r| r.event.action == "key.leak").collect();
        assert_eq!(leaks.len(), 1);
        assert_eq!(leaks[0].event.context.ip, Some("198.51.100.7".parse().unwrap()), "the reporter's address");
        assert_eq!(leaks[0].event.metadata["reporter"], "public");

        // Bounds: 100 strings (more: 413, nothing looked at), 512 bytes each, a 64 KiB
        // body; unknown fields refused.
        let many: Vec<String> = (0..101).map(|i| format!("s{i}")).collect();
        public(json!(many), "198.51.100.8:1").await.assert_error(413, "payload_too_large");
        let (_, third) = app.create_key(json!({"name": "in a report too large"})).await;
        let mut too_many: Vec<String> = (0..100).map(|i| format!("s{i}")).collect();
        too_many.push(third.clone());
        public(json!(too_many), "198.51.100.10:1").await.assert_error(413, "payload_too_large");
        assert_eq!(app.verify(json!({"key": third})).await["code"], "VALID", "nothing of it was processed");
        let huge = json!({"keys": ["y".repeat(70 * 1024)]});
        let request = TestRequest::post().uri("/v1/leaks/revoke").set_json(huge);
        app.send_from(request, "198.51.100.8:1").await.assert_error(413, "payload_too_large");
        public(json!(["x".repeat(513)]), "198.51.100.8:1").await.assert_error(400, "validation_failed");
        let request = TestRequest::post().uri("/v1/leaks/revoke").set_json(json!({"keys": [], "extra": 1}));
        app.send_from(request, "198.51.100.8:1").await.assert_error(400, "validation_failed");

        // The budget is counted in strings: 100 a minute per address (one spent above).
        let strings = |n: usize| json!((0..n).map(|i| format!("s{i}")).collect::<Vec<_>>());
        assert_eq!(public(strings(99), "198.51.100.8:1").await.status.as_u16(), 202);
        public(strings(1), "198.51.100.8:1").await.assert_error(429, "rate_limited");
        assert_eq!(public(strings(1), "198.51.100.9:1").await.status.as_u16(), 202, "another address has its own");
        // IPv6 addresses share their /64's budget.
        assert_eq!(public(strings(100), "[2001:db8:1:2::1]:1").await.status.as_u16(), 202);
        public(strings(1), "[2001:db8:1:2:ffff::7]:1").await.assert_error(429, "rate_limited");
        assert_eq!(public(strings(1), "[2001:db8:1:3::1]:1").await.status.as_u16(), 202);
    }

    async fn a_key_revokes_itself_with_proof_of_possession(app) {
        let (id, key) = app.create_key(json!({"name": "exposed"})).await;
        // No key, or a string that is none: refused.
        app.send(TestRequest::post().uri("/v1/keys/self/revoke")).await.assert_error(401, "unauthorized");
        app.call(Method::POST, "/v1/keys/self/revoke", &broken(&key), None).await.assert_error(401, "unauthorized");
        // Another account's key revokes only itself.
        let other = app.other_account_key().await;
        let (other_id, other_key) = {
            let reply = app.call(Method::POST, "/v1/keys", &other, Some(json!({"name": "theirs"}))).await;
            (reply.str("id"), reply.str("key"))
        };
        let revoked = app.call(Method::POST, "/v1/keys/self/revoke", &other_key, None).await;
        assert_eq!(revoked.status.as_u16(), 200, "{:#}", revoked.body);
        assert_eq!(revoked.body["id"], other_id);
        assert_eq!(app.verify(json!({"key": key})).await["code"], "VALID");

        let revoked = app.call(Method::POST, "/v1/keys/self/revoke", &key, None).await;
        assert_eq!(revoked.status.as_u16(), 200, "{:#}", revoked.body);
        assert_eq!((revoked.body["id"].as_str(), revoked.body["status"].as_str()), (Some(id.as_str()), Some("revoked")));
        assert_eq!(app.verify(json!({"key": key})).await["code"], "REVOKED");
        app.call(Method::POST, "/v1/keys/self/revoke", &key, None).await.assert_error(401, "unauthorized");
        let events: Vec<_> =
            app.account_trail().await.into_iter().filter(|r| r.event.action == "key.self_revoke").collect();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event.actor.to_string(), id);
    }
}
