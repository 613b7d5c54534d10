//! Issue #30: what a container platform relies on, against the built binary — the
//! environment as its configuration (with `*_FILE` secrets), `config check`, `healthcheck`,
//! a SIGTERM that drains and exits 0, and migrations (with the first account) that several
//! instances may start at once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    os::unix::fs::PermissionsExt as _,
    process::Command,
    time::{Duration, Instant},
};

use common::{BIN, Server, account_key};
use keyward_store_pg::testing::TestDatabase;
use serde_json::{Value, json};

fn keyward(args: &[&str], envs: &[(&str, &str)]) -> (bool, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("keyward-deploy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn config_check_reads_the_environment_and_secret_files_without_connecting() {
    let dir = scratch("check");
    let secret = dir.join("secret");
    std::fs::write(&secret, format!("{}\n", "c0".repeat(32))).unwrap();
    let secret = secret.display().to_string();
    // Nothing listens there: a check that connected would fail.
    let url = "postgres://keyward:check-db-password@127.0.0.1:1/keyward";
    let (ok, out, err) = keyward(
        &["config", "check"],
        &[("DATABASE_URL", url), ("KEYWARD_SECRET_FILE", &secret), ("KEYWARD_WORKERS", "3")],
    );
    assert!(ok, "{err}");
    assert!(out.contains("The configuration is valid."), "{out}");
    assert!(out.contains("workers = `3`  (KEYWARD_WORKERS)"), "{out}");
    assert!(out.contains("database_url = `(redacted)`"), "{out}");
    assert!(!out.contains("check-db-password") && !err.contains("check-db-password"), "{out}{err}");
    assert!(!out.contains(&"c0".repeat(32)), "{out}");

    for (env, named) in [
        (("KEYWARD_WORKERS", "lots"), "KEYWARD_WORKERS must be a whole number"),
        (("KEYWARD_SECRET", "not-hex-but-a-secret"), "64 hexadecimal digits"),
        (("KEYWARD_METRICS_TOKEN", "short"), "KEYWARD_METRICS_TOKEN"),
        (("KEYWARD_SHUTDOWN_DELAY_SECONDS", "30"), "KEYWARD_SHUTDOWN_DELAY_SECONDS"),
        (("KEYWARD_SMTP_URL_FILE", "/nonexistent/smtp"), "KEYWARD_SMTP_URL_FILE"),
    ] {
        let (ok, out, err) = keyward(&["config", "check"], &[env]);
        assert!(!ok, "{env:?} passed: {out}");
        assert!(err.contains(named), "{env:?}: {err}");
        assert!(!err.contains("not-hex-but-a-secret"), "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn healthcheck_exits_zero_while_the_server_answers_and_one_when_it_is_gone() {
    let server = Server::start(&[]);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let port = addr.rsplit(':').next().unwrap().to_owned();
    let (ok, _, err) = keyward(&["healthcheck", "--addr", &addr], &[]);
    assert!(ok, "{err}");
    // What a container does: its listen address is 0.0.0.0, asked on loopback.
    let (ok, _, err) = keyward(&["healthcheck"], &[("KEYWARD_LISTEN", &format!("0.0.0.0:{port}"))]);
    assert!(ok, "{err}");
    server.stop();
    let (ok, _, err) = keyward(&["healthcheck", "--addr", &addr], &[]);
    assert!(!ok && err.contains("unhealthy"), "{err}");
}

fn status_of(server: &Server, path: &str) -> Option<(u16, Value)> {
    server.try_request("GET", path, &[], None).ok().map(|(status, _, body)| (status, body))
}

/// SIGTERM: `/readyz` goes 503 at once while `/healthz` stays 200, requests are still
/// taken for the delay, a request in flight when the listener closes is answered, the
/// usage is written, and the process exits 0 within the grace.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_finishes_what_is_in_flight_flushes_usage_and_exits_zero() {
    let db = TestDatabase::new().await;
    let root = account_key(db.url(), "pro");
    let envs = [("DATABASE_URL", db.url()), ("KEYWARD_SHUTDOWN_DELAY_SECONDS", "2")];
    let mut server = Server::start(&envs);
    let (status, created) = server.call("POST", "/v1/keys", &root, Some(json!({"name": "drained"})));
    assert_eq!(status, 201, "{created}");
    let (key, id) = (created["key"].as_str().unwrap().to_owned(), created["id"].as_str().unwrap().to_owned());
    assert_eq!(status_of(&server, "/readyz").unwrap().0, 200);

    // A verification whose body is still on its way when the signal comes.
    let body = json!({"key": key}).to_string();
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut slow = TcpStream::connect(&addr).unwrap();
    write!(
        slow,
        "POST /v1/keys/verify HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {root}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        &body[..5]
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let signalled = Instant::now();
    server.terminate();
    let mut unready = None;
    while unready.is_none() && signalled.elapsed() < Duration::from_secs(2) {
        if let Some((503, body)) = status_of(&server, "/readyz") {
            unready = Some(body);
        }
    }
    let unready = unready.expect("/readyz answered 503 during the delay");
    assert_eq!(unready["error"], "shutting_down", "{unready}");
    assert_eq!(status_of(&server, "/healthz").map(|s| s.0), Some(200), "still alive while draining");

    // Past the delay the listener closes; the request in flight is still answered.
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(signalled.elapsed()));
    assert!(status_of(&server, "/healthz").is_none(), "no new connection after the delay");
    slow.write_all(&body.as_bytes()[5..]).unwrap();
    let mut answer = String::new();
    slow.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"valid\":true"), "{answer}");

    let status = server.wait();
    assert!(status.success(), "exited with {status}");
    assert!(signalled.elapsed() < Duration::from_secs(10), "exited within the grace: {:?}", signalled.elapsed());
    let output = server.output_with("\"message\":\"stopped\"");
    assert!(output.contains("the webhook worker stopped"), "{output}");

    // The verification's usage was written before the exit.
    let after = Server::start(&[("DATABASE_URL", db.url())]);
    let (status, usage) = after.call("GET", &format!("/v1/keys/{id}/usage"), &root, None);
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["data"].as_array().map(Vec::len), Some(1), "the drained verification is in the usage: {usage}");
}

/// Three instances starting at once on an empty database: the migrations apply once, and
/// exactly one first account is made, whose login and key are written to the file.
#[tokio::test(flavor = "multi_thread")]
async fn migrations_started_at_once_apply_one_after_the_other_and_bootstrap_one_account() {
    let db = TestDatabase::empty().await;
    let dir = scratch("bootstrap");
    let file = dir.join("bootstrap.txt");
    let file_env = file.display().to_string();
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(BIN)
                .arg("migrate")
                .env("DATABASE_URL", db.url())
                .env("KEYWARD_BOOTSTRAP_FILE", &file_env)
                .env("KEYWARD_LOG_FORMAT", "json")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    for output in &outputs {
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    let printed: Vec<String> = outputs.iter().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).collect();
    assert_eq!(printed.iter().filter(|o| o.contains("First account")).count(), 1, "{printed:?}");

    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(text.contains("admin@keyward.local"), "{text}");
    let key = text.split_whitespace().find(|w| w.starts_with("kw_acct_live_")).expect("the key is in the file");
    let server = Server::start(&[("DATABASE_URL", db.url())]);
    let (status, account) = server.call("GET", "/v1/account", key, None);
    assert_eq!(status, 200, "{account}");

    // A later start finds the account and makes none.
    let (ok, out, err) = keyward(&["migrate"], &[("DATABASE_URL", db.url()), ("KEYWARD_BOOTSTRAP_FILE", &file_env)]);
    assert!(ok && !out.contains("First account"), "{out}{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text, "the file is left as it was");
    std::fs::remove_dir_all(&dir).unwrap();
}
