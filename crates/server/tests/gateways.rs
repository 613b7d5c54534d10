//! The gateway configurations of `examples/gateways/` (issue #31), run as they are written —
//! the ports filled in — by real nginx and real Caddy in front of an upstream that echoes
//! the headers it received, with two `keyward serve` instances on one PostgreSQL behind
//! them: every check is the proxy asking Keyward.
//!
//! nginx and Caddy come from Debian's packages (`cargo xtask ci` installs them when it can);
//! a test fails, saying so, when one is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    io::{BufReader, Read, Write},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::Server;
use keyward_store_pg::testing::TestDatabase;
use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keyward-gateway-{name}-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An upstream that answers every request with the path and headers it received.
fn echo_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                while let Some(request) = common::http::read_request(&mut reader) {
                    let body = json!({"path": request.path, "headers": request.headers}).to_string();
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    if stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes())).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// An answer as the client saw it.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn upstream_saw(&self, name: &str) -> Option<String> {
        let echoed: Value = serde_json::from_str(&self.body).ok()?;
        echoed["headers"][name].as_str().map(str::to_owned)
    }
}

/// A request from the client's address, 127.0.0.2 (the proxy and Keyward are on 127.0.0.1).
fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Answer {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&"127.0.0.2:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    socket.connect(&format!("127.0.0.1:{port}").parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    let mut stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: api.test\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned())).collect();
    Answer { status, headers, body: body.to_owned() }
}

fn bearer(key: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {key}"))
}

/// A proxy process, stopped when dropped.
struct Proxy {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    fn wait_until_listening(self) -> Self {
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return self;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the proxy did not listen; it printed:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
    }
}

fn installed(program: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"] {
        let path = Path::new(dir).join(program);
        if path.exists() {
            return path;
        }
    }
    panic!("{program} is not installed: apt-get install {program} (cargo xtask ci installs it as root on Debian)");
}

/// nginx from `examples/gateways/nginx/keyward.conf`, its `${…}` filled in.
fn nginx(keyward: &str, keyspace: &str, upstream: u16) -> Proxy {
    let binary = installed("nginx");
    let dir = scratch("nginx");
    let port = free_port();
    let template = std::fs::read_to_string(root().join("examples/gateways/nginx/keyward.conf")).unwrap();
    let server = template
        .replace("${LISTEN_ADDR}", &format!("127.0.0.1:{port}"))
        .replace("${KEYWARD_ADDR}", keyward)
        .replace("${KEYSPACE_ID}", keyspace)
        .replace("${UPSTREAM_ADDR}", &format!("127.0.0.1:{upstream}"));
    std::fs::write(dir.join("keyward.conf"), server).unwrap();
    let d = dir.display();
    let main = format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nevents {{}}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           include {d}/keyward.conf;\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main).unwrap();
    let log = dir.join("error.log");
    let checked = Command::new(&binary).args(["-t", "-q", "-c"]).arg(dir.join("nginx.conf")).output().unwrap();
    assert!(checked.status.success(), "nginx -t: {}", String::from_utf8_lossy(&checked.stderr));
    let child = Command::new(binary)
        .args(["-c"])
        .arg(dir.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proxy { child, port, log }.wait_until_listening()
}

/// Caddy from `examples/gateways/caddy/Caddyfile`, its `{$…}` from the environment.
fn caddy(keyward: &str, keyspace: &str, upstream: u16) -> Proxy {
    let binary = installed("caddy");
    let dir = scratch("caddy");
    let port = free_port();
    let log = dir.join("caddy.log");
    let child = Command::new(binary)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(root().join("examples/gateways/caddy/Caddyfile"))
        .env("LISTEN_ADDR", format!(":{port}"))
        .env("KEYWARD_ADDR", keyward)
        .env("KEYSPACE_ID", keyspace)
        .env("UPSTREAM_ADDR", format!("127.0.0.1:{upstream}"))
        .env("HOME", &dir)
        .env("XDG_DATA_HOME", &dir)
        .env("XDG_CONFIG_HOME", &dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Proxy { child, port, log }.wait_until_listening()
}

/// Two Keyward instances on one database — `trusting` believes the proxy's
/// X-Forwarded-For, `other` believes nobody — an account, a keyspace with route rules,
/// and keys.
struct Setup {
    _db: TestDatabase,
    trusting: Server,
    other: Server,
    admin: String,
    keyspace: String,
}

impl Setup {
    async fn new() -> Self {
        let db = TestDatabase::new().await;
        let admin = common::account_key(db.url(), "pro");
        let trusting = Server::start(&[("DATABASE_URL", db.url()), ("KEYWARD_TRUSTED_PROXIES", "127.0.0.1/32")]);
        let other = Server::start(&[("DATABASE_URL", db.url())]);
        let (status, created) =
            trusting.call("POST", "/v1/keyspaces", &admin, Some(json!({"name": "api", "prefix": "gw"})));
        assert_eq!(status, 201, "{created:#}");
        let keyspace = created["id"].as_str().unwrap().to_owned();
        let table = json!({"default": "deny", "rules": [
            {"methods": ["GET"], "path": "/v1/servers/**", "scopes": ["servers:read"]},
            {"path": "/v1/public/**"},
        ]});
        let (status, body) = trusting.call("PUT", &format!("/v1/keyspaces/{keyspace}/routes"), &admin, Some(table));
        assert_eq!(status, 200, "{body:#}");
        Self { _db: db, trusting, other, admin, keyspace }
    }

    fn addr(server: &Server) -> String {
        server.base.trim_start_matches("http://").to_owned()
    }

    fn key(&self, body: Value) -> (String, String) {
        let mut body = body;
        body["keyspace_id"] = json!(self.keyspace);
        let (status, created) = self.trusting.call("POST", "/v1/keys", &self.admin, Some(body));
        assert_eq!(status, 201, "{created:#}");
        (created["id"].as_str().unwrap().to_owned(), created["key"].as_str().unwrap().to_owned())
    }
}

/// What both proxies must do: `trusted` fronts the instance that believes it, `untrusted`
/// the one that does not.
fn scenario(setup: &Setup, trusted: &Proxy, untrusted: &Proxy, name: &str) {
    let (reader_id, reader) = setup.key(json!({"name": "reader", "scopes": ["servers:read"], "owner_id": "cust_7"}));
    let (_, plain) = setup.key(json!({"name": "plain"}));
    let p = trusted.port;

    let none = get(p, "/v1/servers/1", &[]);
    assert_eq!(none.status, 401, "{name}: no key: {none:?}");
    for bad in ["garbage", "kw_live_3HnW8zcB1fQ2LkVd9sXyTq0aPm7Rb5EoJ4wZ1x"] {
        let (n, v) = bearer(bad);
        assert_eq!(get(p, "/v1/servers/1", &[(n, &v)]).status, 401, "{name}: {bad}");
    }

    // Allowed: the upstream sees the key's identity, not what the client claimed.
    let (n, v) = bearer(&reader);
    let ok = get(p, "/v1/servers/1?page=2", &[(n, &v), ("x-keyward-key-id", "key_forged")]);
    assert_eq!(ok.status, 200, "{name}: {ok:?}");
    assert_eq!(ok.upstream_saw("x-keyward-key-id").as_deref(), Some(reader_id.as_str()), "{name}: {}", ok.body);
    assert_eq!(ok.upstream_saw("x-keyward-owner-id").as_deref(), Some("cust_7"), "{name}");
    assert_eq!(ok.upstream_saw("x-keyward-scopes").as_deref(), Some("servers:read"), "{name}");
    // A refused request never reaches the upstream, and a forged identity with no key neither.
    let forged = get(p, "/v1/public/x", &[("x-keyward-key-id", "key_forged")]);
    assert_eq!(forged.status, 401, "{name}: {forged:?}");

    let (n, v) = bearer(&plain);
    let scopeless = get(p, "/v1/servers/1", &[(n, &v)]);
    assert_eq!(scopeless.status, 403, "{name}: {scopeless:?}");
    assert_eq!(scopeless.header("x-keyward-code"), Some("INSUFFICIENT_SCOPE"), "{name}");
    // A key without an owner: the client's own X-Keyward-Owner-Id does not stand in.
    let public = get(p, "/v1/public/x", &[(n, &v), ("x-keyward-owner-id", "cust_forged")]);
    assert_eq!(public.status, 200, "{name}: {public:?}");
    assert!(public.upstream_saw("x-keyward-key-id").is_some(), "{name}");
    let owner = public.upstream_saw("x-keyward-owner-id").filter(|v| !v.is_empty());
    assert_eq!(owner, None, "{name}: {}", public.body);
    let meta = public.upstream_saw("x-keyward-meta").filter(|v| !v.is_empty());
    assert_eq!(meta, None, "{name}: no metadata, no header: {}", public.body);
    assert_eq!(get(p, "/v2/closed", &[(n, &v)]).status, 403, "{name}: the route's default");
    // The client's own X-Forwarded-* / X-Original-* do not move the check to another route.
    for (header, value) in [("x-forwarded-uri", "/v1/public/x"), ("x-original-uri", "/v1/public/x")] {
        let smuggled = get(p, "/v1/servers/1", &[(n, &v), (header, value)]);
        assert_eq!(smuggled.status, 403, "{name}: {header}: {smuggled:?}");
    }

    // Revoked through the other instance: refused through this one within a second (two,
    // for a loaded machine).
    let (status, _) = setup.other.call("DELETE", &format!("/v1/keys/{reader_id}"), &setup.admin, None);
    assert_eq!(status, 200);
    let (n, v) = bearer(&reader);
    let revoked_at = Instant::now();
    while get(p, "/v1/servers/1", &[(n, &v)]).status != 401 {
        assert!(revoked_at.elapsed() < Duration::from_secs(2), "{name}: the revocation did not arrive");
        std::thread::sleep(Duration::from_millis(20));
    }

    // An exhausted limit: 429 with Retry-After.
    let (_, limited) =
        setup.key(json!({"name": "limited", "rate_limits": [{"name": "burst", "limit": 1, "period_seconds": 60}]}));
    let (n, v) = bearer(&limited);
    assert_eq!(get(p, "/v1/public/a", &[(n, &v)]).status, 200, "{name}");
    let refused = get(p, "/v1/public/a", &[(n, &v)]);
    assert_eq!(refused.status, 429, "{name}: {refused:?}");
    let retry: u64 = refused.header("retry-after").unwrap_or_default().parse().unwrap_or(0);
    assert!((1..=60).contains(&retry), "{name}: Retry-After {retry}: {refused:?}");
    assert_eq!(refused.header("x-keyward-code"), Some("RATE_LIMITED"), "{name}");

    // IP allowlists: the client is 127.0.0.2. A forged X-Forwarded-For passes nothing; the
    // real address passes only where Keyward believes the proxy.
    let (_, office) = setup.key(json!({"name": "office", "ip_allowlist": ["127.0.0.2"]}));
    let (_, elsewhere) = setup.key(json!({"name": "elsewhere", "ip_allowlist": ["203.0.113.9"]}));
    let forged_from = ("x-forwarded-for", "203.0.113.9");
    for proxy in [trusted, untrusted] {
        let (n, v) = bearer(&elsewhere);
        let forged = get(proxy.port, "/v1/public/x", &[(n, &v), forged_from]);
        assert_eq!(forged.status, 403, "{name}: a forged X-Forwarded-For: {forged:?}");
        assert_eq!(forged.header("x-keyward-code"), Some("IP_NOT_ALLOWED"), "{name}");
    }
    let (n, v) = bearer(&office);
    assert_eq!(get(trusted.port, "/v1/public/x", &[(n, &v)]).status, 200, "{name}: the client's own address");
    let unbelieved = get(untrusted.port, "/v1/public/x", &[(n, &v), ("x-forwarded-for", "127.0.0.2")]);
    assert_eq!(unbelieved.status, 403, "{name}: an untrusted proxy's word: {unbelieved:?}");
}

#[tokio::test]
async fn nginx_with_the_documented_configuration() {
    let setup = Setup::new().await;
    let upstream = echo_upstream();
    let trusted = nginx(&Setup::addr(&setup.trusting), &setup.keyspace, upstream);
    let untrusted = nginx(&Setup::addr(&setup.other), &setup.keyspace, upstream);
    scenario(&setup, &trusted, &untrusted, "nginx");
}

#[tokio::test]
async fn caddy_with_the_documented_configuration() {
    let setup = Setup::new().await;
    let upstream = echo_upstream();
    let trusted = caddy(&Setup::addr(&setup.trusting), &setup.keyspace, upstream);
    let untrusted = caddy(&Setup::addr(&setup.other), &setup.keyspace, upstream);
    scenario(&setup, &trusted, &untrusted, "caddy");
}
