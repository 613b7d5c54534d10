//! The built `keyward` binary as the end-to-end tests drive it: started on a free port with
//! its output collected, called over real HTTP, stopped with SIGTERM.

#![allow(dead_code)] // Each test binary uses a part of this.

pub mod http;
pub mod webdriver;

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_keyward");

/// A running `keyward serve`, with everything it printed collected.
pub struct Server {
    child: Child,
    pub base: String,
    output: Arc<Mutex<String>>,
}

impl Server {
    pub fn start(envs: &[(&str, &str)]) -> Self {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env_remove("DATABASE_URL")
            // Each server decides its limits on its own unless a test names a Redis: one
            // inherited from `cargo xtask ci` would let tests that run at the same time
            // spend each other's login and rate limits (the same 127.0.0.1, the same
            // bootstrap email).
            .env_remove("REDIS_URL")
            // Nothing is exported unless a test asks.
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
            .env("KEYWARD_LOG_FORMAT", "json")
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            let port_tx = port_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(event) = serde_json::from_str::<Value>(&line)
                        && event["message"] == "listening"
                    {
                        let _ = port_tx.send(event["addr"].as_str().unwrap().to_owned());
                    }
                    output.lock().unwrap().push_str(&(line + "\n"));
                }
            });
        }
        let addr = port_rx.recv_timeout(Duration::from_secs(30)).expect("keyward printed its address");
        Self { child, base: format!("http://{addr}"), output }
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The log lines at WARN or ERROR so far, for an assertion's message.
    pub fn complaints(&self) -> String {
        self.output()
            .lines()
            .filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\""))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The output once it contains `needle` (stdout and stderr are read by two threads, so
    /// one may lag the other).
    pub fn output_with(&self, needle: &str) -> String {
        for _ in 0..100 {
            let output = self.output();
            if output.contains(needle) {
                return output;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{needle:?} never appeared in: {}", self.output());
    }

    pub fn call(&self, method: &str, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
        let (status, _, body) = self.request(method, path, ("authorization", &format!("Bearer {key}")), body);
        (status, body)
    }

    /// One request with one credential header; returns status, Set-Cookie and the JSON body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        credential: (&str, &str),
        body: Option<Value>,
    ) -> (u16, Option<String>, Value) {
        self.try_request(method, path, &[credential], body).unwrap()
    }

    /// As [`Server::call`], for a server that may be gone (a transport error is returned,
    /// not a panic); no answer within 10 seconds is an error too, so a hang fails the test.
    pub fn try_call(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), ureq::Error> {
        let (status, _, body) = self.try_request(method, path, &[("authorization", &format!("Bearer {key}"))], body)?;
        Ok((status, body))
    }

    /// One request with the headers given; status, Set-Cookie and the JSON body, or the
    /// transport's error.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<(u16, Option<String>, Value), ureq::Error> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let url = format!("{}{path}", self.base);
        let mut response = match (method, body) {
            ("GET", _) => with_headers(agent.get(&url), headers).call(),
            ("DELETE", _) => with_headers(agent.delete(&url), headers).call(),
            ("POST", Some(body)) => with_headers(agent.post(&url), headers).send_json(body),
            ("PATCH", Some(body)) => with_headers(agent.patch(&url), headers).send_json(body),
            ("PUT", Some(body)) => with_headers(agent.put(&url), headers).send_json(body),
            _ => unreachable!(),
        }?;
        let status = response.status().as_u16();
        assert!(response.headers().get("x-request-id").is_some());
        let cookie = response.headers().get("set-cookie").and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok((status, cookie, response.body_mut().read_json().unwrap_or(Value::Null)))
    }

    /// SIGTERM, without waiting.
    pub fn terminate(&self) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
    }

    /// Waits for the process to end; its exit status.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    /// SIGKILL: no shutdown hook runs, as when the machine loses power.
    pub fn kill_9(&self) {
        Command::new("kill").args(["-KILL", &self.child.id().to_string()]).status().unwrap();
    }

    /// Sends SIGTERM and waits: a graceful stop exits 0.
    pub fn stop(mut self) -> String {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "keyward exited with {status} on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
        self.output()
    }
}

/// A test that fails while its server runs must not leave the server behind (it would
/// hold its port, its database connections and a core for the rest of the run).
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn with_headers<B>(mut request: ureq::RequestBuilder<B>, headers: &[(&str, &str)]) -> ureq::RequestBuilder<B> {
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
}

/// Creates an account on `url` with the CLI; returns its account key.
pub fn account_key(url: &str, plan: &str) -> String {
    let created = Command::new(BIN)
        .args(["account", "create", "--name", "Acme", "--plan", plan])
        .env("DATABASE_URL", url)
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let stdout = String::from_utf8_lossy(&created.stdout).into_owned();
    stdout.split_whitespace().find(|w| w.starts_with("kw_acct_live_")).expect("the account key is printed").to_owned()
}

/// Creates an account on `url` with an owner whose password (`password`) comes on stdin,
/// as a provisioning script would pass it; returns its account key.
pub fn account_with_owner(url: &str, name: &str, owner: &str, password: &str) -> String {
    let mut create = Command::new(BIN)
        .args(["account", "create", "--name", name, "--plan", "pro", "--owner-email", owner, "--password-stdin"])
        .env("DATABASE_URL", url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut create.stdin.take().unwrap(), format!("{password}\n").as_bytes()).unwrap();
    let created = create.wait_with_output().unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let stdout = String::from_utf8_lossy(&created.stdout).into_owned();
    stdout.split_whitespace().find(|w| w.starts_with("kw_acct_live_")).expect("the account key is printed").to_owned()
}

/// A configuration file with the management limits raised, for tests whose load is the
/// point (a 429 is not what they are about); its path, for `KEYWARD_CONFIG`.
pub fn raised_limits_config() -> String {
    let unlimited = "{ burst = 1000000000, per_second = 1000000000 }";
    let path = std::env::temp_dir().join(format!("keyward-test-{}-{}.toml", std::process::id(), rand_suffix()));
    std::fs::write(
        &path,
        format!("[rate_limits]\nip = {unlimited}\nkey = {unlimited}\naccount = {unlimited}\nverify = {unlimited}\nendpoints = []\n"),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

/// A Redis of the test's own on a free port, so the test may kill it.
pub struct PrivateRedis {
    child: std::process::Child,
    pub url: String,
}

impl PrivateRedis {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (cargo xtask ci installs it)");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Self { child, url: format!("redis://127.0.0.1:{port}") }
    }

    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Empties it, as a restart without persistence (or the expiry of every entry) would.
    pub fn flush_all(&self) {
        let port = self.url.rsplit(':').next().unwrap();
        let flushed = Command::new("redis-cli").args(["-p", port, "FLUSHALL"]).output().unwrap();
        assert!(flushed.status.success(), "{}", String::from_utf8_lossy(&flushed.stderr));
    }
}

/// Rate-limit windows are aligned to the hour: a burst that must fall in one window does not
/// start in the last ten seconds of one.
pub fn away_from_the_end_of_an_hour() {
    let into_hour = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 3600;
    if into_hour > 3590 {
        std::thread::sleep(Duration::from_secs(3601 - into_hour));
    }
}
