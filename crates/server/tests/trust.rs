//! The release binary against real PostgreSQL, attacked as issue #13's reviewer did: slow
//! bodies that tried to hold revocation hostage, and a NUL that stopped metering.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::{
    io::{ErrorKind, Read, Write},
    net::TcpStream,
    time::Duration,
};

use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use keyward_store_pg::testing::TestDatabase;
use serde_json::json;

mod common;

use common::{Server, account_key};

/// Twenty-four clients announce a 60 KB login body and send a few bytes of it. Revocation
/// must answer while every one of them is still waiting — they hold no transaction slot
/// and no connection — and each of them is then answered 408 instead of being waited for
/// forever.
#[tokio::test(flavor = "multi_thread")]
async fn slow_bodies_cannot_hold_revocation_hostage() {
    let db = TestDatabase::new().await;
    let root = account_key(db.url(), "enterprise");
    let server = Server::start(&[("DATABASE_URL", db.url())]);
    let (status, created) = server.call("POST", "/v1/keys", &root, Some(json!({"name": "hostage"})));
    assert_eq!(status, 201, "{created}");
    let (id, key) = (created["id"].as_str().unwrap().to_owned(), created["key"].as_str().unwrap().to_owned());

    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut slow: Vec<TcpStream> = (0..24)
        .map(|_| {
            let mut stream = TcpStream::connect(&addr).unwrap();
            stream
                .write_all(
                    b"POST /v1/auth/login HTTP/1.1\r\nHost: keyward\r\nContent-Type: application/json\r\n\
                      Content-Length: 60000\r\n\r\n{\"email\": ",
                )
                .unwrap();
            stream
        })
        .collect();
    // Let the server take them all in before the revocation arrives.
    std::thread::sleep(Duration::from_secs(1));

    let (status, revoked) = server.call("DELETE", &format!("/v1/keys/{id}"), &root, None);
    assert_eq!(status, 200, "{revoked}");
    for stream in &mut slow {
        stream.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let read = stream.read(&mut byte);
        assert!(
            matches!(&read, Err(e) if e.kind() == ErrorKind::WouldBlock),
            "a slow client was answered before the revocation: {read:?}"
        );
    }
    let (_, verdict) = server.call("POST", "/v1/keys/verify", &root, Some(json!({"key": key})));
    assert_eq!(verdict["code"], "REVOKED");

    // Each slow client is answered 408 with the envelope, not waited for.
    for mut stream in slow {
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).contains("request_timeout") {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"error\":\"request_timeout\""), "{answer}");
    }
    server.stop();
}

/// A verification whose endpoint holds a NUL is refused; metering goes on for everyone.
#[tokio::test(flavor = "multi_thread")]
async fn a_nul_in_an_endpoint_cannot_stop_metering() {
    let db = TestDatabase::new().await;
    let root = account_key(db.url(), "enterprise");
    let server = Server::start(&[("DATABASE_URL", db.url())]);
    let (status, created) = server.call("POST", "/v1/keys", &root, Some(json!({"name": "metered"})));
    assert_eq!(status, 201, "{created}");
    let (id, key) = (created["id"].as_str().unwrap().to_owned(), created["key"].as_str().unwrap().to_owned());

    let (status, refused) = server.call(
        "POST",
        "/v1/keys/verify",
        &root,
        Some(json!({"key": key, "endpoint": "/a\u{0}b", "method": "GET"})),
    );
    assert_eq!((status, refused["error"].as_str()), (400, Some("validation_failed")), "{refused}");
    assert_eq!(refused["details"][0]["field"], "endpoint");
    for _ in 0..5 {
        let (status, body) = server.call(
            "POST",
            "/v1/keys/verify",
            &root,
            Some(json!({"key": key, "endpoint": "/ok", "method": "GET"})),
        );
        assert_eq!((status, body["code"].as_str()), (200, Some("VALID")), "{body}");
    }
    let logs = server.stop();
    assert!(!logs.contains("could not write usage"), "{logs}");

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        usage_count: i64,
    }
    let uuid = keyward_domain::KeyId::as_uuid(&id.parse().unwrap());
    let mut conn = AsyncPgConnection::establish(db.url()).await.unwrap();
    let count: Count = diesel::sql_query(format!("SELECT usage_count FROM keys WHERE id = '{uuid}'"))
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(count.usage_count, 5);
}

/// Imported legacy hashes are keyed with the server's secret: those imported before a secret
/// was configured are converted when `serve` starts with one, and still verify; the table
/// then holds no plain SHA-256 of any legacy key.
#[tokio::test(flavor = "multi_thread")]
async fn imported_legacy_hashes_are_keyed_with_the_secret() {
    let db = TestDatabase::new().await;
    let root = account_key(db.url(), "enterprise");
    let legacy = "col_live_weak_legacy_1";
    let digest: String =
        keyward_domain::KeyHash::sha256(legacy).to_bytes()[1..].iter().map(|b| format!("{b:02x}")).collect();
    let import = json!({"keys": [{"hash": format!("sha256:{digest}"), "name": "old"}]});

    let plain = Server::start(&[("DATABASE_URL", db.url())]);
    let (status, body) = plain.call("POST", "/v1/keys/import", &root, Some(import));
    assert_eq!(status, 201, "{body}");
    plain.stop();
    #[derive(QueryableByName)]
    struct Tag {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        tag: i32,
        #[diesel(sql_type = diesel::sql_types::Text)]
        digest: String,
    }
    let tags = async || -> Vec<(i32, String)> {
        let mut conn = AsyncPgConnection::establish(db.url()).await.unwrap();
        let rows: Vec<Tag> = diesel::sql_query(
            "SELECT get_byte(hash, 0) AS tag, encode(substring(hash from 2), 'hex') AS digest FROM keys WHERE kind = 'service'",
        )
        .load(&mut conn)
        .await
        .unwrap();
        rows.into_iter().map(|r| (r.tag, r.digest)).collect()
    };
    assert_eq!(tags().await, vec![(2, digest.clone())], "without a secret: plain SHA-256");

    let secret = "7f".repeat(32);
    let keyed = Server::start(&[("DATABASE_URL", db.url()), ("KEYWARD_SECRET", &secret)]);
    let stored = tags().await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, 3, "peppered at start");
    assert_ne!(stored[0].1, digest, "the plain digest is gone");
    let (status, verdict) = keyed.call("POST", "/v1/keys/verify", &root, Some(json!({"key": legacy})));
    assert_eq!((status, verdict["code"].as_str()), (200, Some("VALID")), "{verdict}");
    let logs = keyed.stop();
    assert!(logs.contains("imported legacy key hashes now keyed"), "{logs}");
}

/// Issue #29: the files `serve` and `account create` write a secret to are created 0600,
/// and a symbolic link there is refused, never followed.
#[tokio::test(flavor = "multi_thread")]
async fn key_files_are_private_and_never_follow_a_link() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDatabase::new().await;
    let dir = std::env::temp_dir().join(format!("keyward-key-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let create = |file: &std::path::Path| {
        std::process::Command::new(common::BIN)
            .args(["account", "create", "--name", "Files", "--plan", "pro", "--key-file"])
            .arg(file)
            .env("DATABASE_URL", db.url())
            .output()
            .unwrap()
    };
    // A link to a file someone else reads: refused with a clear error, the target untouched.
    let target = dir.join("world-readable");
    std::fs::write(&target, "not a key\n").unwrap();
    let link = dir.join("via-link.key");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let refused = create(&link);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "not a key\n");
    // An existing file readable by all is replaced by one only its owner reads.
    let existing = dir.join("existing.key");
    std::fs::write(&existing, "old\n").unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o644)).unwrap();
    let made = create(&existing);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let mode = std::fs::metadata(&existing).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(std::fs::read_to_string(&existing).unwrap().starts_with("kw_acct_live_"));
    let fresh = dir.join("fresh.key");
    assert!(create(&fresh).status.success());
    assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o600);
    std::fs::remove_dir_all(&dir).unwrap();
}
