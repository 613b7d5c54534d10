//! Mail end to end (issue #29): the built binary on PostgreSQL sends invitations' and
//! resets' links through a real SMTP server the test starts (aiosmtpd from PyPI, in a
//! virtualenv under the target directory). The server is down at first: the mail waits,
//! shows as delayed in `/metrics` and on the dashboard's people page, and arrives once —
//! exactly once — when it comes up. Each link works once; the reset is asked for and used
//! on the dashboard's pages, in headless Chromium.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use keyward_store_pg::testing::TestDatabase;
use serde_json::json;

mod common;

use common::{Server, account_with_owner, webdriver::Browser};

const AIOSMTPD: &str = "aiosmtpd==1.4.6";
const PASSWORD: &str = "correct horse battery staple";

/// A virtualenv with aiosmtpd, made (once) under the target directory.
fn sink_python() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"), PathBuf::from);
    let venv = target.join("mail-venv");
    let python = venv.join("bin/python");
    let has =
        |python: &PathBuf| Command::new(python).args(["-c", "import aiosmtpd"]).status().is_ok_and(|s| s.success());
    if !has(&python) {
        let made = Command::new("python3").args(["-m", "venv"]).arg(&venv).status();
        assert!(
            made.is_ok_and(|s| s.success()),
            "python3 with its venv module is needed (Debian: apt-get install python3-venv)"
        );
        let installed = Command::new(venv.join("bin/pip")).args(["install", "--quiet", AIOSMTPD]).status();
        assert!(installed.is_ok_and(|s| s.success()), "pip could not install {AIOSMTPD} from PyPI");
    }
    python
}

/// The SMTP server, saving each message in `dir`; stopped when dropped.
struct Sink(Child);

impl Sink {
    fn start(port: u16, dir: &Path) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mail/sink.py");
        let mut child = Command::new(sink_python())
            .arg(script)
            .arg(port.to_string())
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the SMTP sink did not start");
        Self(child)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The messages in `dir`, oldest first, once there are `count` of them (or `wait` passed).
fn messages_within(dir: &Path, count: usize, wait: Duration) -> Vec<String> {
    let deadline = Instant::now() + wait;
    loop {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        if files.len() >= count || Instant::now() > deadline {
            return files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn messages(dir: &Path, count: usize) -> Vec<String> {
    messages_within(dir, count, Duration::from_secs(20))
}

/// The token of the link `{base}/{path}/…` in a message (quoted-printable soft breaks
/// undone).
fn link_token(message: &str, base: &str, path: &str) -> String {
    let text = message.replace("=\r\n", "").replace("=\n", "");
    let prefix = format!("{base}/{path}/");
    let at = text.find(&prefix).unwrap_or_else(|| panic!("no {prefix} link in:\n{text}")) + prefix.len();
    text[at..at + 43].to_owned()
}

fn metric(server: &Server, name: &str) -> Option<f64> {
    let response = ureq::get(format!("{}/metrics", server.base))
        .header("authorization", "Bearer scrape-token-for-the-mail-test")
        .call()
        .ok()?;
    let text = response.into_body().read_to_string().ok()?;
    text.lines().find(|l| l.starts_with(name) && !l.starts_with('#')).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn invitations_and_resets_arrive_by_mail_once_through_an_outage() {
    // The virtualenv first: the sink must come up within the first retry's 4 to 6 s.
    sink_python();
    let db = TestDatabase::new().await;
    account_with_owner(db.url(), "Acme", "owner@acme.test", PASSWORD);
    let dir = std::env::temp_dir().join(format!("keyward-mail-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let smtp_port = free_port();
    let smtp_url = format!("smtp://127.0.0.1:{smtp_port}?tls=none");
    let server = Server::start(&[
        ("DATABASE_URL", db.url()),
        ("KEYWARD_SMTP_URL", &smtp_url),
        ("KEYWARD_MAIL_FROM", "Keyward <keys@acme.test>"),
        ("KEYWARD_METRICS_TOKEN", "scrape-token-for-the-mail-test"),
    ]);
    let base = server.base.clone();

    // The owner invites Grace while the mail server is down: the answer holds no link.
    let (status, cookie, _) = server
        .try_request("POST", "/v1/auth/login", &[], Some(json!({"email": "owner@acme.test", "password": PASSWORD})))
        .unwrap();
    assert_eq!(status, 200);
    let cookie = cookie.unwrap().split(';').next().unwrap().to_owned();
    let owner = [("cookie", cookie.as_str())];
    assert_eq!(
        server
            .try_request("POST", "/v1/account/verify-password", &owner, Some(json!({"password": PASSWORD})))
            .unwrap()
            .0,
        200
    );
    let invite = json!({"email": "grace@acme.test", "role": "member"});
    let (status, _, invited) = server.try_request("POST", "/v1/account/users", &owner, Some(invite)).unwrap();
    assert_eq!(status, 202, "{invited}");
    assert!(invited.get("accept_url").is_none(), "with a mailer the link goes only to the address: {invited}");

    // The try fails; the mail waits, and /metrics says one is delayed.
    server.output_with("a mail could not be sent");
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&server, "keyward_mail_delayed") != Some(1.0) {
        assert!(Instant::now() < deadline, "the delayed mail never showed in /metrics");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(messages(&dir, 0).is_empty());
    // The dashboard's people page says so too, naming the address.
    let browser = Browser::start();
    browser.go(&format!("{base}/dashboard/sign-in"));
    browser.fill("#email", "owner@acme.test");
    browser.fill("#password", PASSWORD);
    browser.click("form[data-api] button[type=submit]");
    browser.wait_for_path("/dashboard");
    browser.go(&format!("{base}/dashboard/people"));
    let delayed = browser.wait_for_text("#delayed-mail");
    assert!(delayed.contains("Join Acme on Keyward to grace@acme.test"), "{delayed}");
    browser.screenshots("postgres-mail-delayed");

    // The server comes up: the mail arrives at the next try, once.
    let _sink = Sink::start(smtp_port, &dir);
    // At the next try: 4 to 6 s after the first, or, on a machine too busy to start the
    // sink by then, the one after (a minute later).
    let arrived = messages_within(&dir, 1, Duration::from_secs(90));
    assert_eq!(arrived.len(), 1);
    let invitation = &arrived[0];
    assert!(invitation.contains("To: grace@acme.test"), "{invitation}");
    assert!(invitation.contains("Subject: Join Acme on Keyward"), "{invitation}");
    assert!(invitation.contains("text/plain") && invitation.contains("text/html"), "{invitation}");
    let token = link_token(invitation, &base, "invitations");

    // The link works once.
    let (status, _, seen) = server.try_request("GET", &format!("/v1/invitations/{token}"), &[], None).unwrap();
    assert_eq!((status, seen["email"].as_str()), (200, Some("grace@acme.test")), "{seen}");
    let accept = format!("/v1/invitations/{token}/accept");
    let (status, _, joined) = server.try_request("POST", &accept, &[], Some(json!({"password": PASSWORD}))).unwrap();
    assert_eq!(status, 200, "{joined}");
    assert_eq!(server.try_request("POST", &accept, &[], Some(json!({"password": PASSWORD}))).unwrap().0, 404);

    // A reset, asked for on the sign-in page: the same answer for a stranger, a mail only
    // for Grace.
    let (status, grace, _) = server
        .try_request("POST", "/v1/auth/login", &[], Some(json!({"email": "grace@acme.test", "password": PASSWORD})))
        .unwrap();
    assert_eq!(status, 200);
    let grace = grace.unwrap().split(';').next().unwrap().to_owned();
    browser.go(&format!("{base}/dashboard/sign-in"));
    browser.click("a[href='/dashboard/password-reset']");
    browser.wait_for_path("/dashboard/password-reset");
    browser.fill("#email", "grace@acme.test");
    browser.click("#password-reset button[type=submit]");
    let asked = browser.wait_for_text("#password-reset [data-done-panel]");
    assert!(asked.starts_with("If a login has this address, a link"), "{asked}");
    browser.screenshots("postgres-password-reset-asked");
    let (unknown_status, _, unknown) =
        server.try_request("POST", "/v1/auth/password-reset", &[], Some(json!({"email": "nobody@acme.test"}))).unwrap();
    assert_eq!((unknown_status, unknown), (202, json!({"status": "requested"})));
    let arrived = messages(&dir, 2);
    assert_eq!(arrived.len(), 2);
    let reset = &arrived[1];
    assert!(reset.contains("To: grace@acme.test") && reset.contains("Subject: Reset your Keyward password"), "{reset}");
    let token = link_token(reset, &base, "password-reset");

    // The link opens the page that chooses the new password, once.
    let link = format!("{base}/password-reset/{token}");
    browser.go(&link);
    browser.fill("#password", "a new passphrase here");
    browser.fill("#repeat_password", "not the same passphrase");
    browser.click("#choose-password button[type=submit]");
    assert!(browser.wait_for_text("#password-error").contains("differ"));
    browser.fill("#repeat_password", "a new passphrase here");
    browser.click("#choose-password button[type=submit]");
    let done = browser.wait_for_text("#choose-password [data-done-panel]");
    assert!(done.starts_with("Your password is set"), "{done}");
    browser.screenshots("postgres-password-reset-done");
    browser.go(&link);
    browser.fill("#password", "another passphrase");
    browser.fill("#repeat_password", "another passphrase");
    browser.click("#choose-password button[type=submit]");
    let dead = browser.wait_for_text("#choose-password [data-error]");
    assert!(dead.starts_with("This link does not work"), "{dead}");
    let path = format!("/v1/auth/password-reset/{token}");
    assert_eq!(server.try_request("POST", &path, &[], Some(json!({"password": "another passphrase"}))).unwrap().0, 404);
    // Grace's session ended with the old password; the new one signs in.
    assert_eq!(server.try_request("GET", "/v1/auth/session", &[("cookie", grace.as_str())], None).unwrap().0, 401);
    let login = json!({"email": "grace@acme.test", "password": "a new passphrase here"});
    assert_eq!(server.try_request("POST", "/v1/auth/login", &[], Some(login)).unwrap().0, 200);

    // Nothing more came, nothing was sent twice, and no link's token is in the log.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(messages(&dir, 3).len(), 2, "a mail was sent twice, or to the stranger");
    assert!(metric(&server, "keyward_mail_sent").is_some_and(|n| n >= 2.0));
    let logs = server.output();
    assert!(!logs.contains(&token), "a reset's token was logged");
    std::fs::remove_dir_all(&dir).unwrap();
}
