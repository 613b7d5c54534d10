//! The built `keyward` binary, driven as an operator and a client would: migrate, create an
//! account, serve on a free port, walk the key lifecycle over real HTTP, stop with SIGTERM.
//! Afterwards neither the logs nor any table of the database holds a plaintext key.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use diesel::{QueryableByName, sql_types::Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use keyward_store_pg::testing::TestDatabase;
use serde_json::json;

mod common;

use common::{BIN, PrivateRedis, Server};

/// The lifecycle of the README walkthrough; returns the plaintext keys it saw.
fn walk_lifecycle(server: &Server, root: &str) -> Vec<String> {
    let (status, created) =
        server.call("POST", "/v1/keys", root, Some(json!({"name": "srv 42", "scopes": ["server:*"]})));
    assert_eq!(status, 201, "{created}");
    let (id, key) = (created["id"].as_str().unwrap().to_owned(), created["key"].as_str().unwrap().to_owned());
    let verify = |k: &str| {
        server.call("POST", "/v1/keys/verify", root, Some(json!({"key": k, "scopes": ["server:list"]}))).1["code"]
            .clone()
    };
    assert_eq!(verify(&key), "VALID");
    let (status, listed) = server.call("GET", "/v1/keys", root, None);
    assert_eq!(status, 200);
    assert_eq!(listed["total"], 1);
    let (status, rotated) =
        server.call("POST", &format!("/v1/keys/{id}/rotate"), root, Some(json!({"grace_period_seconds": 3600})));
    assert_eq!(status, 201, "{rotated}");
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    assert_eq!(verify(&key), "VALID", "the old key works during the grace period");
    assert_eq!(verify(&new_key), "VALID");
    let (status, _) = server.call("DELETE", &format!("/v1/keys/{}", rotated["id"].as_str().unwrap()), root, None);
    assert_eq!(status, 200);
    assert_eq!(verify(&new_key), "REVOKED", "revocation is seen by the next verify");
    let (status, error) = server.call("GET", "/v1/keys", "kw_live_nope", None);
    assert_eq!(status, 401);
    assert_eq!(error["error"], "unauthorized");
    vec![key, new_key]
}

const PASSWORD: &str = "correct horse battery staple";

/// A person logs in, re-enters the password and mints an account key; returns the
/// secrets seen on the way (password, session token, account key).
fn person_flow(server: &Server) -> Vec<String> {
    let login = json!({"email": "ops@acme.io", "password": PASSWORD});
    let (status, cookie, body) =
        server.request("POST", "/v1/auth/login", ("content-type", "application/json"), Some(login));
    assert_eq!(status, 200, "{body}");
    let cookie = cookie.expect("a session cookie");
    let token = cookie.split(';').next().unwrap().strip_prefix("keyward_session=").unwrap().to_owned();
    let session = ("cookie", format!("keyward_session={token}"));
    let session = (session.0, session.1.as_str());
    let (status, _, body) =
        server.request("POST", "/v1/account/verify-password", session, Some(json!({"password": PASSWORD})));
    assert_eq!(status, 200, "{body}");
    let (status, _, body) =
        server.request("POST", "/v1/account/keys", session, Some(json!({"name": "ci", "scopes": ["keys:read"]})));
    assert_eq!(status, 201, "{body}");
    let account_key = body["key"].as_str().unwrap().to_owned();
    assert_eq!(server.call("GET", "/v1/keys", &account_key, None).0, 200);
    vec![PASSWORD.to_owned(), token, account_key]
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    row: String,
}

/// Every row of every table of the database, as text: a data dump without pg_dump.
async fn dump(url: &str) -> String {
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    let mut text = String::new();
    for table in [
        "accounts",
        "keyspaces",
        "keys",
        "users",
        "memberships",
        "sessions",
        "audit_events",
        "__diesel_schema_migrations",
    ] {
        let rows: Vec<Row> =
            diesel::sql_query(format!("SELECT t::text AS row FROM {table} t")).load(&mut conn).await.unwrap();
        assert!(
            table == "__diesel_schema_migrations" || !rows.is_empty(),
            "{table} is empty: the dump would prove nothing"
        );
        for row in rows {
            text.push_str(&row.row);
            text.push('\n');
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_flow_against_postgres_leaves_no_plaintext_anywhere() {
    let db = TestDatabase::new().await;
    // `migrate` on a database that is already current is a no-op that succeeds.
    let migrate = Command::new(BIN).arg("migrate").env("DATABASE_URL", db.url()).output().unwrap();
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));

    // The owner's password comes on stdin, as a provisioning script would pass it.
    let mut create = Command::new(BIN)
        .args([
            "account",
            "create",
            "--name",
            "Acme",
            "--plan",
            "pro",
            "--owner-email",
            "ops@acme.io",
            "--password-stdin",
        ])
        .env("DATABASE_URL", db.url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut create.stdin.take().unwrap(), format!("{PASSWORD}\n").as_bytes()).unwrap();
    let created = create.wait_with_output().unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let stdout = String::from_utf8_lossy(&created.stdout).into_owned();
    assert!(!stdout.contains(PASSWORD), "a password read from stdin is not echoed");
    let root = stdout
        .split_whitespace()
        .find(|w| w.starts_with("kw_acct_live_"))
        .expect("the account key is printed")
        .to_owned();

    let server = Server::start(&[("DATABASE_URL", db.url())]);
    let mut secrets = walk_lifecycle(&server, &root);
    secrets.extend(person_flow(&server));
    let logs = server.stop();
    assert!(logs.contains("\"message\":\"listening\""), "{logs}");
    assert!(logs.contains("keyward::audit") && logs.contains("account_key.create"), "audit events are logged");

    let data = dump(db.url()).await;
    assert!(data.contains("$argon2id$v=19$m=19456,t=2,p=1$"), "passwords are stored as argon2id at the OWASP minimum");
    audit_verify_names_a_tampered_event(db.url()).await;
    secrets.push(root);
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a secret is in the logs");
        assert!(!data.contains(secret.as_str()), "a secret is in the database");
    }
    for key in secrets.iter().filter(|s| s.starts_with("kw_")) {
        // Not even the random part of a key alone.
        let random = &key[key.len() - 36..key.len() - 6];
        assert!(!data.contains(random) && !logs.contains(random));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_default_warns_and_prints_a_bootstrap_key_once() {
    let server = Server::start(&[]);
    let output = server.output_with("Account key, shown once");
    assert!(output.contains("NO DATABASE CONFIGURED"), "{output}");
    let root =
        output.split_whitespace().find(|w| w.starts_with("kw_acct_live_")).expect("bootstrap key printed").to_owned();
    assert_eq!(output.matches(root.as_str()).count(), 1, "printed exactly once");
    // Listening on port 0, the error pages are linked at the port actually chosen.
    let (status, missing) = server.call("GET", "/v1/nothing-here", &root, None);
    assert_eq!(status, 404, "{missing}");
    assert_eq!(missing["documentation_url"], format!("{}/docs/errors/not_found", server.base));
    let secrets = walk_lifecycle(&server, &root);
    let logs = server.stop();
    for secret in secrets {
        assert!(!logs.contains(&secret), "a service key reached the logs");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_refuses_a_database_with_pending_migrations() {
    let db = TestDatabase::new().await;
    let mut conn = AsyncPgConnection::establish(db.url()).await.unwrap();
    diesel_async::SimpleAsyncConnection::batch_execute(&mut conn, "DELETE FROM __diesel_schema_migrations")
        .await
        .unwrap();
    let out =
        Command::new(BIN).args(["serve", "--listen", "127.0.0.1:0"]).env("DATABASE_URL", db.url()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("keyward migrate"));
}

/// redis-rs's `#insecure` is refused at start, never silently turned into in-process
/// limits (issue #29), and the refusal does not echo the URL's password.
#[test]
fn a_redis_url_that_skips_the_certificate_check_stops_the_start() {
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        // The embedded store: what stops the start must be the Redis URL alone.
        .env_remove("DATABASE_URL")
        .env("REDIS_URL", "rediss://:hunter2-secret@127.0.0.1:6390/#insecure")
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve started with an unverified Redis");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("REDIS_CA_FILE") && !stderr.contains("hunter2"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_one_limit_exactly_through_redis_and_survive_its_loss() {
    let db = TestDatabase::new().await;
    let created = Command::new(BIN)
        .args(["account", "create", "--name", "Acme", "--plan", "enterprise"])
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let stdout = String::from_utf8_lossy(&created.stdout).into_owned();
    let root = stdout.split_whitespace().find(|w| w.starts_with("kw_acct_live_")).unwrap().to_owned();

    let redis = PrivateRedis::start();
    let env = [("DATABASE_URL", db.url()), ("REDIS_URL", redis.url.as_str())];
    let (a, b) = (Server::start(&env), Server::start(&env));

    common::away_from_the_end_of_an_hour();
    let body = json!({"name": "shared", "rate_limits": [{"name": "hour", "limit": 25, "period_seconds": 3600}]});
    let (status, created) = a.call("POST", "/v1/keys", &root, Some(body));
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();

    // 100 concurrent verifications, alternating between the instances.
    let codes: Vec<(u16, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..10)
            .map(|t| {
                let (a, b, root, key) = (&a, &b, &root, &key);
                scope.spawn(move || {
                    (0..10)
                        .map(|i| {
                            let server = if (t + i) % 2 == 0 { a } else { b };
                            let (status, body) =
                                server.call("POST", "/v1/keys/verify", root, Some(json!({"key": key})));
                            (status, body["code"].as_str().unwrap_or_default().to_owned())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert!(codes.iter().all(|(status, _)| *status == 200));
    assert_eq!(codes.iter().filter(|(_, c)| c == "VALID").count(), 25, "exactly the limit, across both instances");
    assert_eq!(codes.iter().filter(|(_, c)| c == "RATE_LIMITED").count(), 75);

    // Revocation on A is seen by B's cache through LISTEN/NOTIFY, long before any TTL.
    let (status, fresh) = a.call("POST", "/v1/keys", &root, Some(json!({"name": "to revoke"})));
    assert_eq!(status, 201, "{fresh}");
    let fresh_key = fresh["key"].as_str().unwrap().to_owned();
    assert_eq!(
        b.call("POST", "/v1/keys/verify", &root, Some(json!({"key": fresh_key}))).1["code"],
        "VALID",
        "B's cache is warm"
    );
    let (status, _) = a.call("DELETE", &format!("/v1/keys/{}", fresh["id"].as_str().unwrap()), &root, None);
    assert_eq!(status, 200);
    let revoked_on_b = (0..100).any(|_| {
        let code = b.call("POST", "/v1/keys/verify", &root, Some(json!({"key": fresh_key}))).1["code"].clone();
        code == "REVOKED" || {
            std::thread::sleep(Duration::from_millis(10));
            false
        }
    });
    assert!(revoked_on_b, "B saw the revocation within a second");

    // Redis goes away: both instances keep answering, limiting per instance.
    redis.kill();
    for i in 0..20 {
        let server = if i % 2 == 0 { &a } else { &b };
        let (status, body) = server.call("POST", "/v1/keys/verify", &root, Some(json!({"key": key})));
        assert_eq!(status, 200, "{body}");
        assert!(["VALID", "RATE_LIMITED"].contains(&body["code"].as_str().unwrap()), "{body}");
        assert_eq!(server.call("GET", "/v1/account", &root, None).0, 200);
    }
    let logs = a.stop();
    assert!(logs.contains("Redis is unavailable"), "the fallback is logged");
    b.stop();
}

/// `keyward audit verify` passes on an untouched trail, and names the event a superuser
/// altered behind the trigger's back.
async fn audit_verify_names_a_tampered_event(url: &str) {
    let verify = || Command::new(BIN).args(["audit", "verify"]).env("DATABASE_URL", url).output().unwrap();
    let clean = verify();
    assert!(clean.status.success(), "{}", String::from_utf8_lossy(&clean.stderr));
    assert!(String::from_utf8_lossy(&clean.stdout).contains(": ok ("));

    // The operator writes the heads down outside the database…
    let head = Command::new(BIN).args(["audit", "head"]).env("DATABASE_URL", url).output().unwrap();
    assert!(head.status.success(), "{}", String::from_utf8_lossy(&head.stderr));
    let heads: Vec<String> = String::from_utf8_lossy(&head.stdout).lines().map(str::to_owned).collect();
    let anchored = heads.iter().find(|h| h.starts_with("acct_")).expect("an account's head").clone();
    // …then someone deletes that chain's newest event, going around the trigger: what is
    // left is an intact, shorter chain, which only the anchored head can tell.
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    let account = keyward_domain::AccountId::as_uuid(&anchored.split(':').next().unwrap().parse().unwrap());
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut conn,
        &format!(
            "SET session_replication_role = replica; \
             DELETE FROM audit_events WHERE account_id = '{account}' \
             AND seq = (SELECT max(seq) FROM audit_events WHERE account_id = '{account}'); \
             SET session_replication_role = origin;"
        ),
    )
    .await
    .unwrap();
    assert!(verify().status.success(), "without an anchor the shorter chain verifies");
    let anchored_verify = Command::new(BIN)
        .args(["audit", "verify", "--expect-head", &anchored])
        .env("DATABASE_URL", url)
        .output()
        .unwrap();
    assert!(!anchored_verify.status.success());
    assert!(
        String::from_utf8_lossy(&anchored_verify.stdout).contains("MISSING"),
        "{}",
        String::from_utf8_lossy(&anchored_verify.stdout)
    );

    #[derive(QueryableByName)]
    struct Victim {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: uuid::Uuid,
    }
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    let victim: Victim = diesel::sql_query(
        "SELECT id FROM audit_events WHERE account_id IS NOT NULL ORDER BY seq DESC LIMIT 1 OFFSET 2",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut conn,
        &format!(
            "SET session_replication_role = replica; UPDATE audit_events SET result = 'success', action = 'key.read' WHERE id = '{}';",
            victim.id
        ),
    )
    .await
    .unwrap();
    let tampered = verify();
    assert!(!tampered.status.success());
    let expected = keyward_domain::EventId::from_uuid(victim.id).to_string();
    assert!(
        String::from_utf8_lossy(&tampered.stdout).contains(&format!("BROKEN at {expected}")),
        "{}",
        String::from_utf8_lossy(&tampered.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_counts_are_exact_after_a_graceful_shutdown_under_load() {
    let db = TestDatabase::new().await;
    let created = Command::new(BIN)
        .args(["account", "create", "--name", "Acme", "--plan", "enterprise"])
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&created.stdout).into_owned();
    let root = stdout.split_whitespace().find(|w| w.starts_with("kw_acct_live_")).unwrap().to_owned();
    let server = Server::start(&[("DATABASE_URL", db.url())]);
    let (status, created) = server.call("POST", "/v1/keys", &root, Some(json!({"name": "busy"})));
    assert_eq!(status, 201, "{created}");
    let (key_id, key) = (created["id"].as_str().unwrap().to_owned(), created["key"].as_str().unwrap().to_owned());

    // 300 verifications from 6 threads, then SIGTERM right after the last answer: whatever
    // the flusher had not written yet must be written by the shutdown.
    std::thread::scope(|scope| {
        for _ in 0..6 {
            scope.spawn(|| {
                for _ in 0..50 {
                    let (status, body) = server.call("POST", "/v1/keys/verify", &root, Some(json!({"key": key})));
                    assert_eq!((status, body["code"].as_str()), (200, Some("VALID")), "{body}");
                }
            });
        }
    });
    let logs = server.stop();
    assert!(logs.contains("usage_records_flushed"), "{logs}");

    #[derive(QueryableByName)]
    struct Counts {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        usage_count: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        daily: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        records: i64,
    }
    let uuid = keyward_domain::KeyId::as_uuid(&key_id.parse().unwrap());
    let mut conn = AsyncPgConnection::establish(db.url()).await.unwrap();
    let counts: Counts = diesel::sql_query(format!(
        "SELECT (SELECT usage_count FROM keys WHERE id = '{uuid}') AS usage_count, \
                (SELECT COALESCE(sum(requests), 0)::bigint FROM key_usage_daily WHERE key_id = '{uuid}') AS daily, \
                (SELECT count(*) FROM usage_records WHERE key_id = '{uuid}') AS records"
    ))
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!((counts.usage_count, counts.daily, counts.records), (300, 300, 300), "{logs}");
}
