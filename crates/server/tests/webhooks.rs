//! Webhooks as a receiver sees them (issue #18, parts 4–5): the built binary on PostgreSQL
//! posts to a real HTTP listener in this test. Checked: every key event arrives, signed so
//! that the Standard Webhooks reference library (Python, from PyPI) verifies it; a failed
//! delivery is retried; two instances deliver each message once; and a delivery in flight
//! when its instance is killed with SIGKILL is delivered by another.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::{
    collections::{BTreeMap, VecDeque},
    io::{BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use keyward_store_pg::testing::TestDatabase;
use serde_json::{Value, json};

mod common;

use common::{Server, account_key};

/// The reference library this project checks its signatures with.
const STANDARD_WEBHOOKS: &str = "standardwebhooks==1.3.0";

/// How the receiver answers a request.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Status(u16),
    /// Reads the request and never answers (the connection stays open).
    Hang,
}

/// One request as received.
#[derive(Debug, Clone)]
struct Delivery {
    headers: BTreeMap<String, String>,
    body: String,
    answered: Option<u16>,
}

impl Delivery {
    fn id(&self) -> &str {
        &self.headers["webhook-id"]
    }

    fn event_type(&self) -> String {
        serde_json::from_str::<Value>(&self.body).unwrap()["type"].as_str().unwrap().to_owned()
    }
}

/// An HTTP/1.1 listener: answers with the queued answers first, then 204.
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Delivery>>>,
}

impl Receiver {
    fn start(answers: &[Answer]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/keyward-events", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(answers.iter().copied().collect::<VecDeque<_>>()));
        let (shared, queue) = (received.clone(), answers.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (received, answers) = (shared.clone(), queue.clone());
                std::thread::spawn(move || serve(stream, &received, &answers));
            }
        });
        Self { url, received }
    }

    fn received(&self) -> Vec<Delivery> {
        self.received.lock().unwrap().clone()
    }

    fn wait_for(&self, what: &str, timeout: Duration, done: impl Fn(&[Delivery]) -> bool) -> Vec<Delivery> {
        let deadline = Instant::now() + timeout;
        loop {
            let received = self.received();
            if done(&received) {
                return received;
            }
            assert!(Instant::now() < deadline, "never received {what}; got {:#?}", summary(&received));
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn summary(received: &[Delivery]) -> Vec<(String, String, Option<u16>)> {
    received.iter().map(|d| (d.id().to_owned(), d.event_type(), d.answered)).collect()
}

fn serve(stream: TcpStream, received: &Mutex<Vec<Delivery>>, answers: &Mutex<VecDeque<Answer>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    while let Some(common::http::Request { headers, body, .. }) = common::http::read_request(&mut reader) {
        let answer = answers.lock().unwrap().pop_front().unwrap_or(Answer::Status(204));
        let answered = match answer {
            Answer::Status(status) => Some(status),
            Answer::Hang => None,
        };
        received.lock().unwrap().push(Delivery { headers, body: String::from_utf8(body).unwrap(), answered });
        match answer {
            Answer::Status(status) => {
                let reply = format!("HTTP/1.1 {status} X\r\nContent-Length: 7\r\n\r\nanswer!");
                if writer.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
            Answer::Hang => {
                // Held until the sender goes away.
                let _ = reader.read_to_end(&mut Vec::new());
                return;
            }
        }
    }
}

/// A virtualenv with the reference library, made (once) under the target directory.
fn reference_python() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"), PathBuf::from);
    let venv = target.join("webhooks-venv");
    let python = venv.join("bin/python");
    let has = |python: &PathBuf| {
        Command::new(python).args(["-c", "import standardwebhooks"]).status().is_ok_and(|s| s.success())
    };
    if !has(&python) {
        let made = Command::new("python3").args(["-m", "venv"]).arg(&venv).status();
        assert!(
            made.is_ok_and(|s| s.success()),
            "python3 with its venv module is needed to check signatures (Debian: apt-get install python3-venv)"
        );
        let pip = venv.join("bin/pip");
        let installed = Command::new(pip).args(["install", "--quiet", STANDARD_WEBHOOKS]).status();
        assert!(installed.is_ok_and(|s| s.success()), "pip could not install {STANDARD_WEBHOOKS} from PyPI");
    }
    python
}

/// The event types of `deliveries`, as the reference library verified them with `secret`.
fn verified_by_the_reference_library(secret: &str, deliveries: &[Delivery]) -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webhooks/verify.py");
    let mut child = Command::new(reference_python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = json!({
        "secret": secret,
        "deliveries": deliveries.iter().map(|d| json!({"headers": d.headers, "body": d.body})).collect::<Vec<_>>(),
    });
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the reference library refused a delivery: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// An instance on `db`; its webhook secrets are sealed at rest (KEYWARD_SECRET), so every
/// signature the reference library checks was made from a secret read back sealed.
fn server(db: &TestDatabase) -> Server {
    Server::start(&[
        ("DATABASE_URL", db.url()),
        ("KEYWARD_WEBHOOKS_ALLOW_PRIVATE", "true"),
        ("KEYWARD_SECRET", "5ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2"),
    ])
}

fn endpoint(server: &Server, root: &str, url: &str) -> (String, String) {
    let (status, made) = server.call("POST", "/v1/webhooks", root, Some(json!({"url": url})));
    assert_eq!(status, 201, "{made:#}");
    (made["id"].as_str().unwrap().to_owned(), made["secret"].as_str().unwrap().to_owned())
}

fn create_key(server: &Server, root: &str, name: &str) -> (String, String) {
    let (status, key) = server.call("POST", "/v1/keys", root, Some(json!({"name": name})));
    assert_eq!(status, 201, "{key:#}");
    (key["id"].as_str().unwrap().to_owned(), key["key"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn signed_key_events_reach_a_real_receiver_and_a_failure_is_retried() {
    let db = TestDatabase::new().await;
    let root = account_key(db.url(), "enterprise");
    // The first delivery fails with a 503; its retry comes about 5 seconds later.
    let receiver = Receiver::start(&[Answer::Status(503)]);
    let server = server(&db);
    let (hook, secret) = endpoint(&server, &root, &receiver.url);

    let (id, plaintext) = create_key(&server, &root, "events");
    let (status, _) = server.call("PATCH", &format!("/v1/keys/{id}"), &root, Some(json!({"name": "renamed"})));
    assert_eq!(status, 200);
    let (other, _) = create_key(&server, &root, "rotated");
    let (status, _) = server.call("POST", &format!("/v1/keys/{other}/rotate"), &root, Some(json!({})));
    assert_eq!(status, 201);
    let (status, _) = server.call("DELETE", &format!("/v1/keys/{id}"), &root, None);
    assert_eq!(status, 200);

    let delivered = |d: &Delivery| d.answered == Some(204);
    let wanted = ["key.created", "key.created", "key.updated", "key.rotated", "key.revoked"];
    let received = receiver.wait_for("every event, delivered", Duration::from_secs(30), |r| {
        r.iter().filter(|d| delivered(d)).count() >= wanted.len()
    });
    let mut types: Vec<String> = received.iter().filter(|d| delivered(d)).map(Delivery::event_type).collect();
    types.sort();
    let mut expected = wanted.map(String::from).to_vec();
    expected.sort();
    assert_eq!(types, expected, "{:#?}", summary(&received));

    // The failed one came again, with the same webhook-id; the others once each.
    let failed = received.iter().find(|d| d.answered == Some(503)).unwrap();
    assert_eq!(received.iter().filter(|d| d.id() == failed.id()).count(), 2, "{:#?}", summary(&received));
    let mut ids: Vec<&str> = received.iter().filter(|d| delivered(d)).map(Delivery::id).collect();
    ids.dedup();
    assert_eq!(ids.len(), wanted.len(), "each message delivered once");

    // An implementation that is not ours verifies every delivery (and refuses forgeries).
    let all_delivered: Vec<Delivery> = received.iter().filter(|d| delivered(d)).cloned().collect();
    let mut verified = verified_by_the_reference_library(&secret, &all_delivered);
    verified.sort();
    assert_eq!(verified, expected);
    let first = &all_delivered[0];
    assert_eq!(first.headers["content-type"], "application/json");
    assert!(first.headers["user-agent"].starts_with("Keyward-Webhooks/"), "{:?}", first.headers);

    // The endpoint's attempts list both tries of the failed message, newest first.
    let (_, attempts) = server.call("GET", &format!("/v1/webhooks/{hook}/attempts?limit=100"), &root, None);
    let of_failed: Vec<&Value> =
        attempts["data"].as_array().unwrap().iter().filter(|a| a["message_id"] == failed.id()).collect();
    assert_eq!(of_failed.len(), 2, "{attempts:#}");
    assert_eq!((of_failed[0]["status"].as_u64(), of_failed[0]["succeeded"].as_bool()), (Some(204), Some(true)));
    assert_eq!((of_failed[1]["status"].as_u64(), of_failed[1]["response"].as_str()), (Some(503), Some("answer!")));

    // A key due to expire within a day, and one whose 10 credits are spent: key.expiring,
    // quota.low and quota.exhausted, each once (the scan runs every 5 seconds).
    let expires_at = (time::OffsetDateTime::now_utc() + time::Duration::hours(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (status, expiring) =
        server.call("POST", "/v1/keys", &root, Some(json!({"name": "expiring", "expires_at": expires_at})));
    assert_eq!(status, 201, "{expiring:#}");
    let (status, metered) =
        server.call("POST", "/v1/keys", &root, Some(json!({"name": "metered", "quota": {"remaining": 10}})));
    assert_eq!(status, 201, "{metered:#}");
    for _ in 0..10 {
        let (status, verdict) = server.call("POST", "/v1/keys/verify", &root, Some(json!({"key": metered["key"]})));
        assert_eq!((status, verdict["code"].as_str()), (200, Some("VALID")), "{verdict:#}");
    }
    let notices = |r: &[Delivery]| -> Vec<(String, String)> {
        let mut found: Vec<(String, String)> = r
            .iter()
            .filter(|d| delivered(d))
            .map(|d| serde_json::from_str::<Value>(&d.body).unwrap())
            .filter(|b| b["type"] == "key.expiring" || b["type"].as_str().unwrap().starts_with("quota."))
            .map(|b| (b["type"].as_str().unwrap().to_owned(), b["data"]["id"].as_str().unwrap().to_owned()))
            .collect();
        found.sort();
        found
    };
    let expected_notices = vec![
        ("key.expiring".to_owned(), expiring["id"].as_str().unwrap().to_owned()),
        ("quota.exhausted".to_owned(), metered["id"].as_str().unwrap().to_owned()),
        ("quota.low".to_owned(), metered["id"].as_str().unwrap().to_owned()),
    ];
    receiver.wait_for("the notices", Duration::from_secs(30), |r| notices(r).len() >= 3);
    // Another scan or two later, none of them again.
    std::thread::sleep(Duration::from_secs(11));
    let received = receiver.received();
    assert_eq!(notices(&received), expected_notices);

    // Nothing secret in what the server printed, nor in the payloads.
    let output = server.output();
    for secret_text in [&secret[6..], plaintext.as_str(), root.as_str()] {
        assert!(!output.contains(secret_text), "a secret in the log");
        assert!(!received.iter().any(|d| d.body.contains(secret_text)), "a secret in a payload");
    }
}

#[tokio::test]
async fn two_instances_deliver_each_message_once_and_a_kill_9_loses_none() {
    let db = TestDatabase::new().await;
    let root = account_key(db.url(), "enterprise");
    // The first request is held unanswered: its instance dies with it in flight.
    let receiver = Receiver::start(&[Answer::Hang]);
    let first = server(&db);
    endpoint(&first, &root, &receiver.url);
    create_key(&first, &root, "in flight");
    let held = receiver.wait_for("the held delivery", Duration::from_secs(10), |r| !r.is_empty());
    let held_id = held[0].id().to_owned();
    first.kill_9();

    // Two instances now; twenty more keys. Each message arrives once, the held one again
    // once its claim's lease (20 s) has ended.
    let (a, b) = (server(&db), server(&db));
    for i in 0..20 {
        let instance = if i % 2 == 0 { &a } else { &b };
        create_key(instance, &root, &format!("key {i}"));
    }
    receiver.wait_for("21 deliveries", Duration::from_secs(60), |r| {
        r.iter().filter(|d| d.answered == Some(204)).count() >= 21
    });
    // Time for a second delivery of any of them to arrive, were there one.
    std::thread::sleep(Duration::from_secs(2));
    let received = receiver.received();
    let mut per_id: BTreeMap<&str, usize> = BTreeMap::new();
    for d in received.iter().filter(|d| d.answered == Some(204)) {
        *per_id.entry(d.id()).or_default() += 1;
    }
    assert_eq!(per_id.len(), 21, "{:#?}", summary(&received));
    assert!(per_id.values().all(|n| *n == 1), "a message delivered twice: {per_id:?}");
    assert_eq!(per_id.get(held_id.as_str()), Some(&1), "the held message was delivered after the kill");
}

/// One account's endpoints that never answer do not hold the worker (issue #29): they get
/// at most their share of its slots (4), each for the try's timeout, and another
/// account's delivery goes out meanwhile — before any of the slow ones has even ended.
#[tokio::test]
async fn one_accounts_slow_endpoints_do_not_delay_another_accounts_deliveries() {
    let db = TestDatabase::new().await;
    let (slow_root, quick_root) = (account_key(db.url(), "enterprise"), account_key(db.url(), "enterprise"));
    let slow = Receiver::start(&[Answer::Hang; 200]);
    let quick = Receiver::start(&[]);
    let server = server(&db);
    // Eight endpoints that never answer, three keys: 24 deliveries due before the other's.
    for n in 0..8 {
        endpoint(&server, &slow_root, &format!("{}?endpoint={n}", slow.url));
    }
    for n in 0..3 {
        create_key(&server, &slow_root, &format!("slow {n}"));
    }
    let held = slow.wait_for("the slow account's first tries", Duration::from_secs(10), |r| r.len() >= 4);
    assert_eq!(held.len(), 4, "one account holds at most 4 of the worker's slots");

    endpoint(&server, &quick_root, &quick.url);
    create_key(&server, &quick_root, "quick");
    quick.wait_for("the other account's key.created", Duration::from_secs(30), |r| {
        r.iter().any(|d| d.event_type() == "key.created")
    });
    assert_eq!(slow.received().len(), 4, "the other account's delivery waited for the slow ones' timeouts");

    // The slow ones end at the timeout, as failures, and the rest of that account's follow.
    slow.wait_for("the slow account's next tries", Duration::from_secs(30), |r| r.len() >= 8);
    let (status, attempts) = server.call("GET", "/v1/webhooks", &slow_root, None);
    assert_eq!(status, 200, "{attempts}");
    let failing = attempts["data"].as_array().unwrap().iter().filter(|e| !e["failing_since"].is_null()).count();
    assert!(failing >= 1, "a try past the timeout is a failure: {attempts:#}");
}
