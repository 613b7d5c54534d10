//! The parts of the HTTP benchmark that `cargo xtask bench` runs (see `docs/performance.md`):
//!
//! - `bare --listen ADDR --keys FILE --workers N`: the ceiling — an actix-web server that
//!   parses the same JSON body as `POST /v1/keys/verify` and answers from an in-memory hash
//!   map: the least an HTTP verification can cost on this machine.
//! - `import --url URL --root-key FILE --count N --out FILE`: makes N native-format keys,
//!   imports them into Keyward by hash (1,000 a call) and writes `id key` lines.
//! - `load --url URL --root-key FILE --keys FILE --connections C --seconds S [--rate R] [--passes P]`:
//!   verifications round-robin over the keys, closed loop (as fast as answers come) or at R
//!   requests a second in all; latency is timed from each request's scheduled start, so a
//!   slow answer cannot hide the requests queued behind it. `--passes 1` verifies every
//!   key exactly once (the cache warm-up).
//! - `misses …` (each key verified once, one at a time: cache misses on a fresh instance) and
//!   `propagation --url A --other-url B … --trials N` (revoke on A, poll B until REVOKED).
//!
//! Every command prints one `result …` line of `name=value` pairs for xtask to read.

#![allow(clippy::print_stdout)] // A command-line tool: results go to stdout.

mod client;

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use client::{Connection, render};
use keyward_domain::{Environment, KeyHash, KeyPrefix, OsRandom, key_format};
use serde::{Deserialize, Serialize};

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = Options::parse(args.get(1..).unwrap_or_default());
    let outcome = match args.first().map(String::as_str) {
        Some("bare") => bare(&options),
        Some("echo") => echo(&options),
        Some(command @ ("import" | "load" | "misses" | "propagation")) => {
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string()).and_then(
                |runtime| {
                    runtime.block_on(async {
                        match command {
                            "import" => import(&options).await,
                            "load" => load(&options).await,
                            "misses" => misses(&options).await,
                            _ => propagation(&options).await,
                        }
                    })
                },
            )
        }
        _ => Err("usage: keyward-bench <bare | import | load | misses | propagation> [--name value …]".into()),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("keyward-bench: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

struct Options(HashMap<String, String>);

impl Options {
    fn parse(args: &[String]) -> Self {
        Self(
            args.chunks(2)
                .filter_map(|pair| Some((pair[0].strip_prefix("--")?.to_owned(), pair.get(1)?.clone())))
                .collect(),
        )
    }

    fn text(&self, name: &str) -> Result<&str> {
        self.0.get(name).map(String::as_str).ok_or_else(|| format!("--{name} is required"))
    }

    fn number(&self, name: &str, default: u64) -> Result<u64> {
        self.0.get(name).map_or(Ok(default), |v| v.parse().map_err(|_| format!("--{name} must be a number")))
    }

    /// `host:port` of `--{name}` given as `http://host:port`.
    fn host(&self, name: &str) -> Result<String> {
        Ok(self.text(name)?.trim_start_matches("http://").trim_end_matches('/').to_owned())
    }

    fn file(&self, name: &str) -> Result<String> {
        let path = self.text(name)?;
        std::fs::read_to_string(path).map(|s| s.trim().to_owned()).map_err(|e| format!("{path}: {e}"))
    }

    /// `(id, key)` pairs of a keys file.
    fn keys(&self) -> Result<Vec<(String, String)>> {
        let keys: Vec<(String, String)> = self
            .file("keys")?
            .lines()
            .filter_map(|line| line.split_once(' ').map(|(id, key)| (id.to_owned(), key.to_owned())))
            .collect();
        if keys.is_empty() { Err("the keys file holds no keys".into()) } else { Ok(keys) }
    }
}

// --- the ceiling ------------------------------------------------------------------------

/// The same body as Keyward's `VerifyKeyRequest`, parsed as strictly.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Parsed like Keyward parses it; only `key` is looked at.
struct VerifyBody {
    key: String,
    scopes: Option<Vec<String>>,
    resource: Option<String>,
    ip: Option<IpAddr>,
    cost: Option<u32>,
    endpoint: Option<String>,
    method: Option<String>,
}

#[derive(Serialize)]
struct Answer<'a> {
    valid: bool,
    code: &'static str,
    key_id: Option<&'a str>,
    name: Option<&'a str>,
    environment: Option<&'static str>,
    scopes: &'a [String],
    metadata: serde_json::Value,
}

struct Ceiling {
    root_key: String,
    keys: HashMap<String, String>,
}

async fn bare_verify(state: web::Data<Ceiling>, req: HttpRequest, body: web::Json<VerifyBody>) -> HttpResponse {
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|key| key == state.root_key);
    if !authorized {
        return HttpResponse::Unauthorized().finish();
    }
    let found = state.keys.get(&body.key);
    HttpResponse::Ok().json(Answer {
        valid: found.is_some(),
        code: if found.is_some() { "VALID" } else { "NOT_FOUND" },
        key_id: found.map(String::as_str),
        name: found.map(|_| "bench"),
        environment: found.map(|_| "live"),
        scopes: &[],
        metadata: serde_json::Value::Object(serde_json::Map::new()),
    })
}

/// `echo --listen ADDR`: the upstream of the gateway benchmark, `200 ok` to everything.
fn echo(options: &Options) -> Result {
    let listen = options.text("listen")?.to_owned();
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(|| App::new().default_service(web::to(|| async { HttpResponse::Ok().body("ok") })))
            .workers(1)
            .bind(&listen)
            .map_err(|e| format!("{listen}: {e}"))?
            .run()
            .await
            .map_err(|e| e.to_string())
    })
}

fn bare(options: &Options) -> Result {
    let listen = options.text("listen")?.to_owned();
    let workers = usize::try_from(options.number("workers", 1)?).unwrap_or(1);
    let ceiling = web::Data::new(Ceiling {
        root_key: options.file("root-key")?,
        keys: options.keys()?.into_iter().map(|(id, key)| (key, id)).collect(),
    });
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(ceiling.clone())
                .app_data(web::PayloadConfig::new(64 << 20))
                .route("/v1/keys/verify", web::post().to(bare_verify))
                // A collector that takes every OTLP export and keeps nothing: the stand-in
                // the telemetry-on instance exports to.
                .route("/v1/traces", web::post().to(|_: web::Bytes| async { HttpResponse::Ok().finish() }))
                .route("/v1/metrics", web::post().to(|_: web::Bytes| async { HttpResponse::Ok().finish() }))
        })
        .workers(workers)
        .bind(&listen)
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        println!("result listening={listen}");
        server.run().await.map_err(|e| e.to_string())
    })
}

// --- set-up -----------------------------------------------------------------------------

async fn import(options: &Options) -> Result {
    let host = options.host("url")?;
    let root_key = options.file("root-key")?;
    let count = options.number("count", 10_000)?;
    // `--keyspace ID`: the keys go there (the gateway benchmark's gate), else the default.
    let keyspace = options.0.get("keyspace").cloned();
    let prefix = KeyPrefix::new("kw").map_err(|e| e.to_string())?;
    let mut connection = Connection::open(&host).await.map_err(|e| e.to_string())?;
    let mut lines = String::new();
    let mut body = Vec::new();
    for batch in 0..count.div_ceil(1_000) {
        let size = (count - batch * 1_000).min(1_000);
        let keys: Vec<String> = (0..size)
            .map(|_| key_format::generate(&prefix, Environment::Live, &OsRandom).expose_secret().to_owned())
            .collect();
        let entries: Vec<serde_json::Value> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let hex: String = KeyHash::blake3(key).to_bytes()[1..].iter().map(|b| format!("{b:02x}")).collect();
                serde_json::json!({"hash": format!("blake3:{hex}"), "name": format!("bench {batch}-{i}"),
                    "owner_id": format!("cust_{i}"), "scopes": ["server:*"]})
            })
            .collect();
        let mut request = serde_json::json!({ "keys": entries });
        if let Some(keyspace) = &keyspace {
            request["keyspace_id"] = serde_json::json!(keyspace);
        }
        let request = request.to_string();
        let status = connection
            .send(&render("POST", &host, "/v1/keys/import", &root_key, &request), &mut body)
            .await
            .map_err(|e| e.to_string())?;
        if status != 201 {
            return Err(format!("import answered {status}: {}", String::from_utf8_lossy(&body)));
        }
        let answer: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let ids = answer["keys"].as_array().ok_or("the import answer has no keys")?;
        for (key, imported) in keys.iter().zip(ids) {
            lines.push_str(&format!("{} {key}\n", imported["id"].as_str().ok_or("an imported key has no id")?));
        }
    }
    let out = options.text("out")?;
    std::fs::write(out, lines).map_err(|e| format!("{out}: {e}"))?;
    println!("result imported={count}");
    Ok(())
}

// --- measurements -----------------------------------------------------------------------

fn contains(body: &[u8], needle: &[u8]) -> bool {
    body.windows(needle.len()).any(|w| w == needle)
}

fn verify_request(host: &str, root_key: &str, key: &str) -> Vec<u8> {
    let body = format!(r#"{{"key":"{key}","scopes":["server:list"],"endpoint":"/servers","method":"GET"}}"#);
    render("POST", host, "/v1/keys/verify", root_key, &body)
}

/// Percentiles of latencies in microseconds (sorted in place).
fn percentiles(samples: &mut [u64]) -> String {
    samples.sort_unstable();
    let at = |q: f64| samples.get(((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1)));
    format!(
        "p50_us={} p99_us={} max_us={}",
        at(0.50).copied().unwrap_or(0),
        at(0.99).copied().unwrap_or(0),
        samples.last().copied().unwrap_or(0)
    )
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

async fn load(options: &Options) -> Result {
    let host = options.host("url")?;
    let root_key = if options.0.contains_key("path") { String::new() } else { options.file("root-key")? };
    let connections = options.number("connections", 32)?.max(1);
    let seconds = options.number("seconds", 10)?;
    let rate = options.number("rate", 0)?;
    // `--passes 1`: every key verified exactly once (each connection takes its own slice),
    // which is how a run warms the cache; 0: until the deadline.
    let passes = options.number("passes", 0)?;
    // `--path P`: each key presented to `GET P` (a gateway in front of an upstream), where
    // success is a 200; else each key verified with `POST /v1/keys/verify`.
    let gateway_path = options.0.get("path").cloned();
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(
        options
            .keys()?
            .iter()
            .map(|(_, key)| match &gateway_path {
                Some(path) => render("GET", &host, path, key, ""),
                None => verify_request(&host, &root_key, key),
            })
            .collect(),
    );
    let gateway = gateway_path.is_some();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    // Open loop: each connection sends at its share of the rate, on a fixed schedule.
    let interval = (rate > 0).then(|| Duration::from_secs_f64(connections as f64 / rate as f64));
    // The client never sleeps: a task that only yields keeps the runtime polling its sockets
    // (tokio checks them every few dozen polls) instead of parking in epoll_wait. A parked
    // client makes every answer wake an idle core, which on this VM cost the server 16% of
    // its time, and tokio's 1 ms timer wheel would release the paced requests in bursts.
    let spinner = tokio::spawn(async move {
        while Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
    });
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let (host, requests) = (host.clone(), requests.clone());
            tokio::spawn(async move {
                let mut connection = Connection::open(&host).await?;
                let (mut latencies, mut service, mut errors, mut body) = (Vec::new(), Vec::new(), 0u64, Vec::new());
                // Evenly spaced starting points: the connections walk disjoint stretches of
                // the keys, so a run touches as many distinct keys as it sends requests.
                let share = requests.len().div_ceil(connections as usize);
                let first = (c as usize * share).min(requests.len());
                let mut next = first % requests.len();
                let mut remaining = if passes == 0 {
                    usize::MAX
                } else {
                    usize::try_from(passes).unwrap_or(usize::MAX).saturating_mul(share.min(requests.len() - first))
                };
                let mut scheduled =
                    started + interval.map_or(Duration::ZERO, |i| i.mul_f64(c as f64 / connections as f64));
                while remaining > 0 && scheduled < deadline && Instant::now() < deadline {
                    remaining -= 1;
                    if interval.is_some() {
                        while Instant::now() < scheduled {
                            tokio::task::yield_now().await;
                        }
                    } else {
                        scheduled = Instant::now();
                    }
                    let sent = Instant::now();
                    let status = connection.send(&requests[next], &mut body).await?;
                    service.push(micros(sent.elapsed()));
                    // Keyward answers every verification 200 with a code; anything else, or
                    // a key the ceiling does not know, is an error of the run.
                    if status != 200 || (!gateway && !contains(&body, br#""valid":true,"#)) {
                        errors += 1;
                    }
                    latencies.push(micros(scheduled.elapsed()));
                    next = (next + 1) % requests.len();
                    if let Some(interval) = interval {
                        scheduled += interval;
                    }
                }
                Ok::<_, std::io::Error>((latencies, service, errors))
            })
        })
        .collect();
    let (mut latencies, mut service, mut errors) = (Vec::new(), Vec::new(), 0);
    for task in tasks {
        let (mut l, mut s, e) =
            task.await.map_err(|e| e.to_string())?.map_err(|e| format!("a connection failed: {e}"))?;
        latencies.append(&mut l);
        service.append(&mut s);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    spinner.abort();
    // `p50_us`…: from each request's scheduled start (what a client waits, queueing
    // included); `svc_p50_us`…: from the moment it was written (the server's answer time).
    println!(
        "result requests={} errors={errors} rps={:.0} {} {}",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        percentiles(&mut latencies),
        percentiles(&mut service).replace("p50", "svc_p50").replace("p99", "svc_p99").replace("max", "svc_max")
    );
    Ok(())
}

/// Each key verified once, one request at a time: on an instance that has not seen these
/// keys, every one is a cache miss that reaches PostgreSQL.
async fn misses(options: &Options) -> Result {
    let host = options.host("url")?;
    let root_key = options.file("root-key")?;
    let count = usize::try_from(options.number("count", 1_000)?).unwrap_or(1_000);
    let mut connection = Connection::open(&host).await.map_err(|e| e.to_string())?;
    let (mut latencies, mut body) = (Vec::new(), Vec::new());
    for (_, key) in options.keys()?.iter().rev().take(count) {
        let request = verify_request(&host, &root_key, key);
        let started = Instant::now();
        let status = connection.send_reconnecting(&request, &mut body).await.map_err(|e| e.to_string())?;
        latencies.push(micros(started.elapsed()));
        if status != 200 || !contains(&body, br#""valid":true,"#) {
            return Err(format!("a verification answered {status}: {}", String::from_utf8_lossy(&body)));
        }
    }
    println!("result requests={} {}", latencies.len(), percentiles(&mut latencies));
    Ok(())
}

/// Revokes a key through instance A and times how long instance B keeps calling it valid.
async fn propagation(options: &Options) -> Result {
    let (a, b) = (options.host("url")?, options.host("other-url")?);
    let root_key = options.file("root-key")?;
    let trials = usize::try_from(options.number("trials", 100)?).unwrap_or(100);
    let mut on_a = Connection::open(&a).await.map_err(|e| e.to_string())?;
    let mut on_b = Connection::open(&b).await.map_err(|e| e.to_string())?;
    let (mut latencies, mut body) = (Vec::new(), Vec::new());
    for (id, key) in options.keys()?.iter().take(trials) {
        let verify = verify_request(&b, &root_key, key);
        on_b.send_reconnecting(&verify, &mut body).await.map_err(|e| e.to_string())?;
        if !contains(&body, br#""valid":true,"#) {
            return Err(format!("B does not find key {id} valid before the revocation"));
        }
        let revoke = render("DELETE", &a, &format!("/v1/keys/{id}"), &root_key, "");
        let started = Instant::now();
        let status = on_a.send_reconnecting(&revoke, &mut body).await.map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("revoking on A answered {status}: {}", String::from_utf8_lossy(&body)));
        }
        loop {
            on_b.send_reconnecting(&verify, &mut body).await.map_err(|e| e.to_string())?;
            if contains(&body, br#""code":"REVOKED""#) {
                break;
            }
            if started.elapsed() > Duration::from_secs(35) {
                return Err(format!("B still accepts key {id} after 35 s"));
            }
        }
        latencies.push(micros(started.elapsed()));
    }
    println!("result trials={} {}", latencies.len(), percentiles(&mut latencies));
    Ok(())
}
