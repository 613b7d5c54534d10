//! Several release instances on one PostgreSQL and one Redis, as a team scales out: the
//! limits and quotas of a key are exact across all of them, and the one limit each instance
//! keeps alone (its callers' verification bucket) is kept alone.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use keyward_store_pg::testing::TestDatabase;
use serde_json::{Value, json};

mod common;

use common::{PrivateRedis, Server, account_key, away_from_the_end_of_an_hour, raised_limits_config};

/// `total` concurrent verifications of `key` (cost 1), spread round robin over `servers`
/// by 15 client threads; the codes answered.
fn verify_concurrently(servers: &[Server], root: &str, key: &str, total: usize) -> Vec<String> {
    let threads = 15;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (0..total / threads)
                        .map(|i| {
                            let server = &servers[(t + i) % servers.len()];
                            let (status, body) =
                                server.call("POST", "/v1/keys/verify", root, Some(json!({"key": key})));
                            assert_eq!(status, 200, "{body}");
                            body["code"].as_str().unwrap_or_default().to_owned()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

fn count(codes: &[String], code: &str) -> usize {
    codes.iter().filter(|c| *c == code).count()
}

fn create_key(server: &Server, root: &str, body: Value) -> String {
    let (status, created) = server.call("POST", "/v1/keys", root, Some(body));
    assert_eq!(status, 201, "{created}");
    created["key"].as_str().unwrap().to_owned()
}

#[test]
fn three_instances_admit_exactly_a_keys_limit_and_its_quota() {
    let db = tokio::runtime::Runtime::new().unwrap().block_on(TestDatabase::new());
    let root = account_key(db.url(), "enterprise");
    let redis = PrivateRedis::start();
    let config = raised_limits_config();
    let env = [("DATABASE_URL", db.url()), ("REDIS_URL", redis.url.as_str()), ("KEYWARD_CONFIG", config.as_str())];
    let servers = [Server::start(&env), Server::start(&env), Server::start(&env)];

    away_from_the_end_of_an_hour();
    let windowed = create_key(
        &servers[0],
        &root,
        json!({"name": "windowed", "rate_limits": [{"name": "hour", "limit": 40, "period_seconds": 3600}]}),
    );
    let codes = verify_concurrently(&servers, &root, &windowed, 150);
    assert_eq!(count(&codes, "VALID"), 40, "exactly the window's limit, across three instances: {codes:?}");
    assert_eq!(count(&codes, "RATE_LIMITED"), 110);

    let metered = create_key(&servers[1], &root, json!({"name": "metered", "quota": {"remaining": 30}}));
    let codes = verify_concurrently(&servers, &root, &metered, 150);
    assert_eq!(count(&codes, "VALID"), 30, "exactly the quota, across three instances: {codes:?}");
    assert_eq!(count(&codes, "QUOTA_EXHAUSTED"), 120, "{codes:?}");

    for server in servers {
        server.stop();
    }
    redis.kill();
    let _ = std::fs::remove_file(config);
}

/// The verification bucket of SPEC §5 protects an instance's capacity: each instance keeps
/// it alone, without a round trip to Redis (docs/decisions.md), so a second instance adds
/// its own burst. Everything a key's own configuration limits stays shared (above).
#[test]
fn each_instance_keeps_its_callers_verification_bucket_alone() {
    let db = tokio::runtime::Runtime::new().unwrap().block_on(TestDatabase::new());
    let root = account_key(db.url(), "enterprise");
    let redis = PrivateRedis::start();
    let unlimited = "{ burst = 1000000000, per_second = 1000000000 }";
    let config = std::env::temp_dir().join(format!("keyward-verify-bucket-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            "[rate_limits]\nip = {unlimited}\nkey = {unlimited}\naccount = {unlimited}\n\
             verify = {{ burst = 3, per_second = 1 }}\nendpoints = []\n"
        ),
    )
    .unwrap();
    let config_path = config.to_string_lossy().into_owned();
    let env = [("DATABASE_URL", db.url()), ("REDIS_URL", redis.url.as_str()), ("KEYWARD_CONFIG", config_path.as_str())];
    let (a, b) = (Server::start(&env), Server::start(&env));
    let key = create_key(&a, &root, json!({"name": "any"}));

    let verify = |server: &Server| server.call("POST", "/v1/keys/verify", &root, Some(json!({"key": key}))).0;
    // A spends its burst of 3 (a fourth token refills only after a second).
    let on_a: Vec<u16> = (0..6).map(|_| verify(&a)).collect();
    assert!(on_a.contains(&429), "A's bucket ran out: {on_a:?}");
    // Right after A refused, B still has a burst of its own: shared, it would refuse too.
    let on_b: Vec<u16> = (0..3).map(|_| verify(&b)).collect();
    assert_eq!(on_b, [200, 200, 200], "B keeps its own bucket");

    a.stop();
    b.stop();
    redis.kill();
    let _ = std::fs::remove_file(config);
}
