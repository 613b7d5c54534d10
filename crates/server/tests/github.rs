//! GitHub's secret-scanning keys fetched, not pasted (issue #29): the built binary fetches
//! them from a local HTTP server standing in for `api.github.com`, uses them for 24 hours,
//! fetches once more when a report names a key it does not know (GitHub rotated), and keeps
//! the last good set through an outage of the stand-in.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::{
    io::{BufReader, Write},
    net::TcpListener,
    sync::{Arc, Mutex},
};

use base64::Engine as _;
use keyward_store_pg::testing::TestDatabase;
use ring::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _},
};
use serde_json::{Value, json};

mod common;

use common::{Server, account_key};

/// A key pair standing in for one of GitHub's, with its identifier.
struct SigningKey {
    id: &'static str,
    pair: EcdsaKeyPair,
}

impl SigningKey {
    fn new(id: &'static str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        Self { id, pair: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap() }
    }

    fn entry(&self) -> Value {
        let header = [
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
            0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        let der = [&header[..], self.pair.public_key().as_ref()].concat();
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        );
        json!({"key_identifier": self.id, "key": pem, "is_current": true})
    }

    fn sign(&self, body: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.pair.sign(&SystemRandom::new(), body).unwrap())
    }
}

/// The stand-in for GitHub's API: answers `GET /meta/public_keys/secret_scanning` with the
/// document it holds (or 503 while `down`), counting requests.
struct StandIn {
    url: String,
    document: Arc<Mutex<Option<String>>>,
    requests: Arc<Mutex<usize>>,
}

impl StandIn {
    fn start(keys: &[&SigningKey]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/meta/public_keys/secret_scanning", listener.local_addr().unwrap());
        let stand_in = Self { url, document: Arc::default(), requests: Arc::default() };
        stand_in.publish(Some(keys));
        let (document, requests) = (stand_in.document.clone(), stand_in.requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                while let Some(request) = common::http::read_request(&mut reader) {
                    assert_eq!(request.path, "/meta/public_keys/secret_scanning");
                    *requests.lock().unwrap() += 1;
                    let reply = match document.lock().unwrap().as_ref() {
                        Some(body) => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()),
                        None => "HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n".to_owned(),
                    };
                    if writer.write_all(reply.as_bytes()).is_err() {
                        break;
                    }
                }
            }
        });
        stand_in
    }

    /// The keys it serves from now on; `None`: it answers 503.
    fn publish(&self, keys: Option<&[&SigningKey]>) {
        *self.document.lock().unwrap() =
            keys.map(|keys| json!({"public_keys": keys.iter().map(|k| k.entry()).collect::<Vec<_>>()}).to_string());
    }

    fn requests(&self) -> usize {
        *self.requests.lock().unwrap()
    }
}

/// A report of `key`, signed by `by` over the exact bytes sent: status and the answer.
fn report(server: &Server, by: &SigningKey, key: &str) -> (u16, Value) {
    let body = json!([{"token": key, "type": "keyward_key", "url": "https://github.com/o/r/blob/x/.env", "source": "content"}])
        .to_string();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = agent
        .post(format!("{}/v1/leaks/github", server.base))
        .header("content-type", "application/json")
        .header("github-public-key-identifier", by.id)
        .header("github-public-key-signature", by.sign(body.as_bytes()))
        .send(body.as_bytes())
        .unwrap();
    (response.status().as_u16(), response.body_mut().read_json().unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn githubs_keys_are_fetched_cached_refetched_for_a_new_key_and_kept_through_an_outage() {
    let db = TestDatabase::new().await;
    let root = account_key(db.url(), "enterprise");
    let (first, second) = (SigningKey::new("gh-key-1"), SigningKey::new("gh-key-2"));
    let github = StandIn::start(&[&first]);
    let server = Server::start(&[("DATABASE_URL", db.url()), ("KEYWARD_GITHUB_KEYS_URL", &github.url)]);
    let key = |name: &str| {
        let (status, made) = server.call("POST", "/v1/keys", &root, Some(json!({"name": name})));
        assert_eq!(status, 201, "{made}");
        made["key"].as_str().unwrap().to_owned()
    };
    assert_eq!(github.requests(), 0, "nothing is fetched before a report needs it");

    // The first report: the keys are fetched, the report's key revoked.
    let (status, answer) = report(&server, &first, &key("one"));
    assert_eq!((status, answer[0]["label"].as_str()), (200, Some("true_positive")), "{answer}\n{}", server.output());
    assert_eq!(github.requests(), 1);
    // Cached: the next report needs no fetch; a forged one is refused without one.
    assert_eq!(report(&server, &first, &key("two")).0, 200);
    let (status, refused) = report(&server, &SigningKey::new("gh-key-1"), &key("three"));
    assert_eq!((status, refused["error"].as_str()), (401, Some("invalid_signature")));
    assert_eq!(github.requests(), 1, "cached for 24 hours");

    // GitHub rotates: a report signed by a key the set lacks makes one fetch, and passes.
    github.publish(Some(&[&first, &second]));
    assert_eq!(report(&server, &second, &key("four")).0, 200);
    assert_eq!(github.requests(), 2);

    // GitHub's API is down: the last good set still checks reports.
    github.publish(None);
    assert_eq!(report(&server, &second, &key("five")).0, 200);
    assert_eq!(report(&server, &first, &key("six")).0, 200);
    // A made-up identifier may cause a fetch (which fails) but changes nothing, and a
    // flood of them is not a flood of fetches.
    let stranger = SigningKey::new("made-up");
    for _ in 0..5 {
        assert_eq!(report(&server, &stranger, &key("seven")).0, 401);
    }
    assert!(github.requests() <= 3, "{} fetches", github.requests());
    assert_eq!(report(&server, &first, &key("eight")).0, 200, "the last good set is kept");
}

#[test]
fn with_no_set_ever_fetched_a_report_is_answered_503_for_github_to_retry() {
    let github = StandIn::start(&[]);
    github.publish(None);
    let server = Server::start(&[("KEYWARD_GITHUB_KEYS_URL", &github.url)]);
    let (status, answer) = report(&server, &SigningKey::new("gh-key-1"), "kw_live_whatever");
    assert_eq!((status, answer["error"].as_str()), (503, Some("unavailable")), "{answer}");
    let both = std::process::Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("DATABASE_URL")
        .env("KEYWARD_GITHUB_KEYS_URL", &github.url)
        .env("KEYWARD_GITHUB_KEYS_FILE", "/nonexistent.json")
        .output()
        .unwrap();
    assert!(!both.status.success(), "a file and a URL at once is refused");
    assert!(String::from_utf8_lossy(&both.stderr).contains("set one"), "{}", String::from_utf8_lossy(&both.stderr));
}
