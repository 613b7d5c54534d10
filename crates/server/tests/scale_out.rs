//! Several release instances on one PostgreSQL and one Redis, as a team scales out: the
//! limits and quotas of a key are exact across all of them, and the one limit each instance
//! keeps alone (its callers' verification bucket) is kept alone.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use keyward_domain::KeyId;
use keyward_ratelimit::testing::RedisCluster;
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
    create(server, root, body).1
}

/// A new key: its id and its plaintext.
fn create(server: &Server, root: &str, body: Value) -> (KeyId, String) {
    let (status, created) = server.call("POST", "/v1/keys", root, Some(body));
    assert_eq!(status, 201, "{created}");
    (created["id"].as_str().unwrap().parse().unwrap(), created["key"].as_str().unwrap().to_owned())
}

#[test]
fn three_instances_admit_exactly_a_keys_limit_and_its_quota() {
    let db = tokio::runtime::Runtime::new().unwrap().block_on(TestDatabase::new());
    let root = account_key(db.url(), "enterprise");
    let redis = PrivateRedis::start();
    let config = raised_limits_config();
    let env = [("DATABASE_URL", db.url()), ("REDIS_URL", redis.url.as_str()), ("KEYWARD_CONFIG", config.as_str())];
    let servers = [Server::start(&env), Server::start(&env), Server::start(&env)];
    a_keys_limit_and_quota_are_exact_across(&servers, &root);
    for server in servers {
        server.stop();
    }
    redis.kill();
    let _ = std::fs::remove_file(config);
}

/// A window of 40 and a quota of 30, each tried by 150 concurrent verifications spread
/// over `servers`: exactly 40 and 30 admitted.
fn a_keys_limit_and_quota_are_exact_across(servers: &[Server], root: &str) {
    away_from_the_end_of_an_hour();
    let windowed = create_key(
        &servers[0],
        root,
        json!({"name": "windowed", "rate_limits": [{"name": "hour", "limit": 40, "period_seconds": 3600}]}),
    );
    let codes = verify_concurrently(servers, root, &windowed, 150);
    assert_eq!(count(&codes, "VALID"), 40, "exactly the window's limit, across three instances: {codes:?}");
    assert_eq!(count(&codes, "RATE_LIMITED"), 110);

    let metered = create_key(&servers[1], root, json!({"name": "metered", "quota": {"remaining": 30}}));
    let codes = verify_concurrently(servers, root, &metered, 150);
    assert_eq!(count(&codes, "VALID"), 30, "exactly the quota, across three instances: {codes:?}");
    assert_eq!(count(&codes, "QUOTA_EXHAUSTED"), 120, "{codes:?}");
}

/// The same through a three-primary Redis Cluster (`redis+cluster://…`); then one node is
/// killed and started again. The keys on the other nodes stay exact meanwhile; the keys on
/// it are answered from each instance's memory (docs/scaling.md) and, once it is back with
/// its append-only file, are exact again from the counts it kept.
#[test]
fn a_redis_cluster_keeps_limits_exact_across_instances_and_a_node_restart() {
    let db = tokio::runtime::Runtime::new().unwrap().block_on(TestDatabase::new());
    let root = account_key(db.url(), "enterprise");
    let mut cluster = RedisCluster::start();
    let url = cluster.url();
    let config = raised_limits_config();
    let env = [("DATABASE_URL", db.url()), ("REDIS_URL", url.as_str()), ("KEYWARD_CONFIG", config.as_str())];
    let servers = [Server::start(&env), Server::start(&env), Server::start(&env)];
    a_keys_limit_and_quota_are_exact_across(&servers, &root);

    let hourly = json!({"name": "hourly", "rate_limits": [{"name": "hour", "limit": 40, "period_seconds": 3600}]});
    let (on_restarting, restarting) = create(&servers[0], &root, hourly.clone());
    let node = cluster.node_of_key(on_restarting);
    let slot = i32::from(cluster.slot_of_key(on_restarting));
    // On another node, and far enough in slot space not to share a circuit with it.
    let staying = loop {
        let (id, key) = create(&servers[0], &root, hourly.clone());
        if cluster.node_of_key(id) != node && (i32::from(cluster.slot_of_key(id)) - slot).abs() > 512 {
            break key;
        }
    };
    let before = verify_concurrently(&servers, &root, &restarting, 30);
    assert_eq!(count(&before, "VALID"), 30);

    cluster.kill_node(node);
    // The away node's keys are answered (each instance from its memory), never failed.
    let during = verify_concurrently(&servers, &root, &restarting, 30);
    assert_eq!(count(&during, "VALID") + count(&during, "RATE_LIMITED"), 30, "{during:?}");
    // Right after those failures, a key on another node is still decided by the cluster.
    let codes = verify_concurrently(&servers, &root, &staying, 150);
    assert_eq!(count(&codes, "VALID"), 40, "a key on another node stays exact: {codes:?}");

    cluster.restart_node(node);
    every_instance_reaches_node(&servers, &root, &cluster, node);
    let after = verify_concurrently(&servers, &root, &restarting, 150);
    assert_eq!(count(&after, "VALID"), 10, "the node kept its count of 30 through its restart: {after:?}");

    for server in servers {
        server.stop();
    }
    let _ = std::fs::remove_file(config);
}

/// Waits until every instance decides through cluster node `node` again (a connection to a
/// restarted node is made on demand, and a failure keeps Redis skipped for a second): a
/// fresh key of limit 1 on that node, admitted once by the first instance, must then be
/// refused by the others, which only Redis can tell them.
fn every_instance_reaches_node(servers: &[Server], root: &str, cluster: &RedisCluster, node: usize) {
    let once = json!({"name": "probe", "rate_limits": [{"name": "hour", "limit": 1, "period_seconds": 3600}]});
    for _ in 0..60 {
        let probe = loop {
            let (id, key) = create(&servers[0], root, once.clone());
            if cluster.node_of_key(id) == node {
                break key;
            }
        };
        let codes: Vec<String> = servers
            .iter()
            .map(|server| {
                let (_, body) = server.call("POST", "/v1/keys/verify", root, Some(json!({"key": probe})));
                body["code"].as_str().unwrap_or_default().to_owned()
            })
            .collect();
        if codes[0] == "VALID" && codes[1..].iter().all(|c| c == "RATE_LIMITED") {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    panic!("the instances did not reach the restarted node within 30 s");
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
