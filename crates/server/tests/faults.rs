//! Faults, against the built binary with real PostgreSQL and Redis (issue #15): the process
//! killed mid-write, the database gone under load, Redis gone under load, and one
//! idempotency key raced by fifty clients. Each asserts what a client can rely on.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::{
    collections::HashSet,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use keyward_store_pg::testing::TestDatabase;
use serde_json::{Value, json};

mod common;

use common::{PrivateRedis, Server, account_key, raised_limits_config};

/// Every page of a list endpoint (`data` + `next_cursor`), each item's `field`.
fn collect_all(server: &Server, root: &str, path: &str, field: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let separator = if path.contains('?') { '&' } else { '?' };
        let page_path = match &cursor {
            Some(c) => format!("{path}{separator}limit=100&cursor={c}"),
            None => format!("{path}{separator}limit=100"),
        };
        let (status, page) = server.call("GET", &page_path, root, None);
        assert_eq!(status, 200, "{page}");
        found.extend(page["data"].as_array().unwrap().iter().map(|item| item[field].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return found,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_creation_a_client_saw_survives_kill_9_with_its_audit_event() {
    let db = TestDatabase::new().await;
    let root = account_key(db.url(), "enterprise");
    let config = raised_limits_config();
    let env = [("DATABASE_URL", db.url()), ("KEYWARD_CONFIG", config.as_str())];
    let server = Server::start(&env);

    // 1,000 creations from 40 clients; SIGKILL once 400 have been answered, so that many
    // are in flight when the process dies.
    let acknowledged = Mutex::new(Vec::new());
    let answered = AtomicUsize::new(0);
    let lost = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for client in 0..40 {
            let (server, root, acknowledged, answered, lost) = (&server, &root, &acknowledged, &answered, &lost);
            scope.spawn(move || {
                for i in 0..25 {
                    let body = json!({"name": format!("c{client}-{i}")});
                    match server.try_call("POST", "/v1/keys", root, Some(body)) {
                        Ok((201, created)) => {
                            acknowledged.lock().unwrap().push(created["id"].as_str().unwrap().to_owned());
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok((status, body)) => panic!("a creation answered {status}: {body}"),
                        Err(_) => {
                            lost.fetch_add(1, Ordering::SeqCst);
                            return; // The server is gone.
                        }
                    }
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while answered.load(Ordering::SeqCst) < 400 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        server.kill_9();
    });
    let acknowledged = acknowledged.into_inner().unwrap();
    assert!(acknowledged.len() >= 400, "the kill came after 400 answers, not before");
    assert!(lost.load(Ordering::SeqCst) > 0, "the kill interrupted creations in flight");

    // After a restart every acknowledged key is there, and every key has its audit event.
    let server = Server::start(&env);
    let keys: HashSet<String> = collect_all(&server, &root, "/v1/keys", "id").into_iter().collect();
    for id in &acknowledged {
        assert!(keys.contains(id), "acknowledged key {id} was lost");
    }
    let audited: HashSet<String> =
        collect_all(&server, &root, "/v1/audit?action=key.create", "resource_id").into_iter().collect();
    let unaudited: Vec<&String> = keys.iter().filter(|id| !audited.contains(*id)).collect();
    assert!(unaudited.is_empty(), "keys without their audit event: {unaudited:?}");
    assert_eq!(audited.len(), keys.len(), "no audit event for a key that does not exist");
    server.stop();
}

/// What the load saw of one endpoint: each answer's status, its `code` (a verdict) or
/// `error` (an envelope's) and when it came; or a transport error (a hang past the client's
/// 10 s deadline counts as one).
#[derive(Default)]
struct Seen {
    answers: Mutex<Vec<(u16, String, Instant)>>,
    failures: AtomicUsize,
}

impl Seen {
    fn record(&self, answer: Result<(u16, Value), ureq::Error>) {
        match answer {
            Ok((status, body)) => {
                let code = body["code"].as_str().or(body["error"].as_str()).unwrap_or_default().to_owned();
                self.answers.lock().unwrap().push((status, code, Instant::now()));
            }
            Err(_) => {
                self.failures.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    fn count(&self, status: u16, code: &str) -> usize {
        self.answers.lock().unwrap().iter().filter(|(s, c, _)| *s == status && c == code).count()
    }

    /// The first answer with `status` after `instant`.
    fn first_after(&self, instant: Instant, status: u16) -> Option<Instant> {
        self.answers.lock().unwrap().iter().find(|(s, _, at)| *s == status && *at > instant).map(|(_, _, at)| *at)
    }

    fn total(&self) -> usize {
        self.answers.lock().unwrap().len()
    }
}

/// Sets the flag when dropped: load threads stop even when the test panics.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Runs `sql` in the server's admin database (`postgres`), from a thread of its own: the
/// caller may be inside the test's runtime, where another cannot be started.
fn admin_sql(url: &str, sql: &str) {
    let (base, _) = url.rsplit_once('/').unwrap();
    let (admin, sql) = (format!("{base}/postgres"), sql.to_owned());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let mut conn = AsyncPgConnection::establish(&admin).await.unwrap();
            conn.batch_execute(&sql).await.unwrap();
        });
    })
    .join()
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_under_load_keeps_cached_keys_valid_and_management_answers_503() {
    let db = TestDatabase::new().await;
    let root = account_key(db.url(), "enterprise");
    let config = raised_limits_config();
    let server = Server::start(&[("DATABASE_URL", db.url()), ("KEYWARD_CONFIG", config.as_str())]);
    let (status, created) = server.call("POST", "/v1/keys", &root, Some(json!({"name": "busy"})));
    assert_eq!(status, 201, "{created}");
    let (key_id, key) = (created["id"].as_str().unwrap().to_owned(), created["key"].as_str().unwrap().to_owned());
    assert_eq!(server.call("POST", "/v1/keys/verify", &root, Some(json!({"key": key}))).1["code"], "VALID");

    let (verifications, management) = (Seen::default(), Seen::default());
    let stop = &AtomicBool::new(false);
    let name = db.name().to_owned();
    let returned = std::thread::scope(|scope| {
        for _ in 0..4 {
            let (server, root, key, seen) = (&server, &root, &key, &verifications);
            scope.spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    seen.record(server.try_call("POST", "/v1/keys/verify", root, Some(json!({"key": key}))));
                }
            });
        }
        let (server, root, seen) = (&server, &root, &management);
        scope.spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                seen.record(server.try_call("GET", "/v1/keys?limit=1", root, None));
                std::thread::sleep(Duration::from_millis(20));
            }
        });

        // Whatever happens below, the load stops (a panic here must not leave it running).
        let _stop_on_exit = StopOnDrop(stop);
        // As in a restart: no new connection is allowed and every open one is ended (the
        // pool's and the listener's alike) for 2.5 seconds.
        std::thread::sleep(Duration::from_millis(500));
        admin_sql(
            db.url(),
            &format!(
                "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            ),
        );
        std::thread::sleep(Duration::from_millis(2500));
        admin_sql(db.url(), &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"));
        let returned = Instant::now();
        std::thread::sleep(Duration::from_secs(5));
        returned
    });

    assert_eq!(verifications.failures.load(Ordering::SeqCst), 0, "no verification hung or failed in transport");
    assert_eq!(
        verifications.count(200, "VALID"),
        verifications.total(),
        "the cached key answered VALID throughout: {:?}",
        verifications.answers.lock().unwrap().iter().filter(|(s, c, _)| *s != 200 || c != "VALID").collect::<Vec<_>>()
    );
    assert_eq!(management.failures.load(Ordering::SeqCst), 0, "management never hung");
    let unavailable = management.count(503, "unavailable");
    assert!(unavailable > 0, "management met the outage as 503 unavailable");
    assert_eq!(
        management.count(200, "") + unavailable,
        management.total(),
        "management answered 200 or 503, nothing else: {:?}\n{}",
        management.answers.lock().unwrap().iter().filter(|(s, _, _)| ![200, 503].contains(s)).collect::<Vec<_>>(),
        server.complaints()
    );
    let recovered = management.first_after(returned, 200).expect("management recovered");
    assert!(
        recovered - returned < Duration::from_secs(5),
        "management recovered {:?} after the return",
        recovered - returned
    );

    // The listener is back: a revocation now reaches the cache.
    assert_eq!(server.call("DELETE", &format!("/v1/keys/{key_id}"), &root, None).0, 200);
    let mut after_revocation = 0;
    let revoked = (0..100).any(|_| {
        after_revocation += 1;
        let code = server.call("POST", "/v1/keys/verify", &root, Some(json!({"key": key}))).1["code"].clone();
        code == "REVOKED" || {
            std::thread::sleep(Duration::from_millis(20));
            false
        }
    });
    assert!(revoked, "the revocation reached the cache after the database came back");

    // Nothing was lost: every verification the clients saw is metered once the flusher
    // reaches the database again (the graceful stop flushes the rest).
    let verified = 1 + verifications.total() + after_revocation;
    let logs = server.stop();
    assert!(logs.contains("storage unavailable"), "each 503 has its logged cause");
    assert!(!logs.contains("panicked"), "{logs}");
    let server = Server::start(&[("DATABASE_URL", db.url())]);
    let (status, read) = server.call("GET", &format!("/v1/keys/{key_id}"), &root, None);
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["usage_count"].as_u64(), Some(verified as u64), "every verification was metered");
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_outage_under_load_fails_no_request_and_limits_each_instance_on_its_own() {
    let db = TestDatabase::new().await;
    let root = account_key(db.url(), "enterprise");
    let redis = PrivateRedis::start();
    let config = raised_limits_config();
    let server =
        Server::start(&[("DATABASE_URL", db.url()), ("REDIS_URL", &redis.url), ("KEYWARD_CONFIG", config.as_str())]);

    common::away_from_the_end_of_an_hour();
    let body = json!({"name": "shared", "rate_limits": [{"name": "hour", "limit": 40, "period_seconds": 3600}]});
    let (status, created) = server.call("POST", "/v1/keys", &root, Some(body));
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();

    // 120 verifications from 8 clients; Redis is killed after the 20th answer.
    let seen = Seen::default();
    let answered = AtomicUsize::new(0);
    let mut redis = Some(redis);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            let (server, root, key, seen, answered) = (&server, &root, &key, &seen, &answered);
            scope.spawn(move || {
                for _ in 0..15 {
                    seen.record(server.try_call("POST", "/v1/keys/verify", root, Some(json!({"key": key}))));
                    answered.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        while answered.load(Ordering::SeqCst) < 20 {
            std::thread::sleep(Duration::from_millis(1));
        }
        redis.take().unwrap().kill();
    });

    assert_eq!(seen.failures.load(Ordering::SeqCst), 0, "no request failed in transport");
    let (valid, limited) = (seen.count(200, "VALID"), seen.count(200, "RATE_LIMITED"));
    assert_eq!(valid + limited, 120, "every answer was VALID or RATE_LIMITED: {:?}", seen.answers.lock().unwrap());
    // What the fallback allows (docs/decisions.md): the instance decides in process from its
    // own, fresh counts, so during an outage a window admits up to its limit once more per
    // instance — never more than that.
    assert!(valid > 40, "the in-process fallback admitted its own window ({valid} admitted)");
    assert!(valid <= 80, "at most the limit through Redis plus the limit in process ({valid} admitted)");
    let logs = server.stop();
    assert!(logs.contains("Redis is unavailable"), "the fallback is logged");
}

/// Quotas are money: neither Redis losing its data nor Redis going away gives credits back,
/// and an instance that starts during the outage continues from the balance PostgreSQL
/// keeps. (Before, each of these started again from the configured balance.)
#[tokio::test(flavor = "multi_thread")]
async fn neither_a_redis_that_lost_its_data_nor_an_outage_refills_a_quota() {
    let db = TestDatabase::new().await;
    let root = account_key(db.url(), "enterprise");
    let redis = PrivateRedis::start();
    let config = raised_limits_config();
    let redis_url = redis.url.clone();
    let envs = [("DATABASE_URL", db.url()), ("REDIS_URL", redis_url.as_str()), ("KEYWARD_CONFIG", config.as_str())];
    let server = Server::start(&envs);
    let (status, created) =
        server.call("POST", "/v1/keys", &root, Some(json!({"name": "prepaid", "quota": {"remaining": 50}})));
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let verify = |server: &Server, n: usize| -> Vec<String> {
        (0..n)
            .map(|_| {
                let (status, answer) = server.call("POST", "/v1/keys/verify", &root, Some(json!({"key": key})));
                assert_eq!(status, 200, "{answer}");
                answer["code"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    let valid = |codes: &[String]| codes.iter().filter(|c| *c == "VALID").count();
    assert_eq!(valid(&verify(&server, 40)), 40);

    // Redis restarts empty: the 10 credits left are all there are.
    redis.flush_all();
    let after_flush = verify(&server, 20);
    assert_eq!(valid(&after_flush), 10, "{after_flush:?}");
    assert!(after_flush[10..].iter().all(|c| c == "QUOTA_EXHAUSTED"), "{after_flush:?}");

    // Redis goes away: the fallback continues from the balance it last had.
    redis.kill();
    assert_eq!(valid(&verify(&server, 20)), 0, "an outage refills nothing");

    // A new instance during the outage has no balance of its own: it starts from the one
    // PostgreSQL keeps (the usage flush writes it within a second).
    std::thread::sleep(Duration::from_millis(1500));
    let newcomer = Server::start(&envs);
    assert_eq!(valid(&verify(&newcomer, 10)), 0, "a restart refills nothing either");
    let logs = newcomer.stop();
    assert!(logs.contains("Redis is unavailable"), "the fallback is logged");
    server.stop();
}

/// Fifty clients send the same creation with one `Idempotency-Key` at once: one key exists,
/// and every client that got a 201 got that key.
async fn one_idempotency_key_raced_by_fifty_clients_makes_one_key(server: &Server, root: &str) {
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                scope.spawn(move || {
                    let (status, _, body) = server
                        .try_request(
                            "POST",
                            "/v1/keys",
                            &[("authorization", &format!("Bearer {root}")), ("idempotency-key", "race-1")],
                            Some(json!({"name": "raced"})),
                        )
                        .unwrap();
                    (status, body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let created: HashSet<&str> =
        answers.iter().filter(|(status, _)| *status == 201).map(|(_, body)| body["id"].as_str().unwrap()).collect();
    assert_eq!(created.len(), 1, "every 201 carries the one key: {answers:?}");
    for (status, body) in &answers {
        assert!(
            *status == 201 || (*status == 409 && body["error"] == "idempotency_key_in_use"),
            "201, or 409 while the first runs: {status} {body}"
        );
    }
    let names = collect_all(server, root, "/v1/keys", "name");
    assert_eq!(names.iter().filter(|n| *n == "raced").count(), 1, "exactly one key was made");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_idempotency_key_raced_on_postgres() {
    let db = TestDatabase::new().await;
    let root = account_key(db.url(), "enterprise");
    let config = raised_limits_config();
    let server = Server::start(&[("DATABASE_URL", db.url()), ("KEYWARD_CONFIG", config.as_str())]);
    one_idempotency_key_raced_by_fifty_clients_makes_one_key(&server, &root).await;
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn one_idempotency_key_raced_in_memory() {
    let config = raised_limits_config();
    let server = Server::start(&[("KEYWARD_CONFIG", config.as_str())]);
    let output = server.output_with("Account key, shown once");
    let root = output.split_whitespace().find(|w| w.starts_with("kw_acct_live_")).unwrap().to_owned();
    one_idempotency_key_raced_by_fifty_clients_makes_one_key(&server, &root).await;
    server.stop();
}
