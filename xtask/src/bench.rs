//! `cargo xtask bench`: the criterion benchmarks and the HTTP benchmark (release binaries
//! of keyward, on PostgreSQL alone and with Redis, and a bare actix-web server, under the
//! same load). Method and results: docs/performance.md.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::{
    Result, ensure_postgres, ensure_redis, free_port, migrated_account, output, root, run, start, step, succeeds,
};

/// `which`: `criterion` (the in-process benchmarks), `http` (the HTTP benchmark), or both.
pub fn bench(which: Option<&str>) -> Result {
    let database_url = ensure_postgres()?;
    if which != Some("http") {
        step("criterion benchmarks (release build)");
        run(
            "cargo",
            &["bench", "--locked", "-p", "keyward-domain", "-p", "keyward-ratelimit", "-p", "keyward-store-pg"],
            &[("DATABASE_URL", database_url.as_str())],
        )?;
    }
    if which != Some("criterion") {
        http_bench(&database_url, &ensure_redis()?)?;
    }
    Ok(())
}

/// `program args` pinned to `cpu` when the machine has more than one (the server on one
/// core, the load generator on the other, so neither steals the other's time).
fn pinned(cpu: usize, program: &Path, args: &[&str]) -> Command {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let mut command = if cores > 1 && succeeds("sh", &["-c", "command -v taskset"]) {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(cpu.to_string()).arg(program);
        c
    } else {
        Command::new(program)
    };
    command.args(args).current_dir(root());
    command
}

/// PostgreSQL and Redis moved to the load generator's core for the benchmark, and back when
/// dropped.
///
/// With two cores, keyward (core 0) and the busy load generator (core 1) leave PostgreSQL
/// no core of its own, and it ran wherever it found time: on keyward's core, where writing
/// the usage flushes cost keyward a third of its throughput. A deployment gives the database
/// (and Redis) a host of its own; here they take their time from the client's core, which
/// slows only the client, and only during keyward's runs (the bare server writes nothing).
/// Backends started later inherit the postmaster's affinity.
struct StoresAside {
    cores: usize,
}

impl StoresAside {
    fn new() -> Option<Self> {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        if cores < 2 || !succeeds("sh", &["-c", "command -v taskset && command -v pgrep"]) {
            return None;
        }
        let aside = Self { cores };
        if !Self::set_affinity("1") {
            eprintln!(
                "  (could not move PostgreSQL to core 1; it shares keyward's core, which lowers keyward's figures)"
            );
            // Dropped here: whatever did move goes back.
            return None;
        }
        Some(aside)
    }

    /// Every `postgres` and `redis-server` process of the machine (the benchmark's servers
    /// among them). Each is tried, so one backend exiting meanwhile does not leave the
    /// others where they were; true when all moved.
    fn set_affinity(cpus: &str) -> bool {
        let pids = output("sh", &["-c", "pgrep -x postgres; pgrep -x redis-server"]).unwrap_or_default();
        let moved: Vec<bool> = pids
            .split_whitespace()
            .map(|pid| {
                Command::new("taskset")
                    .args(["-a", "-p", "-c", cpus, pid])
                    .stdout(std::process::Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .collect();
        !moved.is_empty() && moved.iter().all(|&ok| ok)
    }
}

impl Drop for StoresAside {
    fn drop(&mut self) {
        Self::set_affinity(&format!("0-{}", self.cores - 1));
    }
}

/// Runs a `keyward-bench` command and returns the `name=value` pairs of its `result` line.
pub(crate) fn measure(mut command: Command) -> Result<std::collections::BTreeMap<String, String>> {
    let out = command.output().map_err(|e| format!("cannot run the load generator: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("the load generator failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let line = stdout.lines().find_map(|l| l.strip_prefix("result ")).ok_or("the load generator printed no result")?;
    Ok(line.split(' ').filter_map(|pair| pair.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect())
}

/// CPU time (user + system, every thread) a process has used so far, in seconds; from
/// `/proc/<pid>/stat`, so Linux only (`None` elsewhere).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces: the
    // state is the first, utime and stime the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ, in which /proc counts, is 100 on every Linux architecture.
    Some(ticks as f64 / 100.0)
}

/// CPU seconds used so far by every process named `name` (`postgres`, `redis-server`).
fn cpu_seconds_of(name: &str) -> f64 {
    let pids = output("pgrep", &["-x", name]).unwrap_or_default();
    pids.split_whitespace().filter_map(|pid| pid.parse().ok()).filter_map(cpu_seconds).sum()
}

/// A closed-loop run against `server`, adding to its result the server's, PostgreSQL's and
/// Redis's CPU time per request (`cpu_us`, `pg_us`, `redis_us`). The stores' is read after
/// `settle`, so that the usage flush of the run's last second counts.
fn closed_run_with_cpu(
    run: impl Fn() -> Result<std::collections::BTreeMap<String, String>>,
    server: u32,
    settle: Duration,
) -> Result<std::collections::BTreeMap<String, String>> {
    let stores = || (cpu_seconds_of("postgres"), cpu_seconds_of("redis-server"));
    let (server_before, (pg_before, redis_before)) = (cpu_seconds(server), stores());
    let mut result = run()?;
    let server_after = cpu_seconds(server);
    std::thread::sleep(settle);
    let (pg_after, redis_after) = stores();
    let requests = figure(&result, "requests").max(1.0);
    if let (Some(before), Some(after)) = (server_before, server_after) {
        result.insert("cpu_us".into(), format!("{:.1}", (after - before) * 1e6 / requests));
        result.insert("pg_us".into(), format!("{:.1}", (pg_after - pg_before) * 1e6 / requests));
        result.insert("redis_us".into(), format!("{:.1}", (redis_after - redis_before) * 1e6 / requests));
    }
    Ok(result)
}

pub(crate) fn figure(result: &std::collections::BTreeMap<String, String>, name: &str) -> f64 {
    result.get(name).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

/// What a benchmark of release binaries starts from: `keyward` and `keyward-bench` built,
/// a work directory, a fresh database with an enterprise account (its key in a file), and
/// a configuration (`keyward.toml` there) that keeps the limits out of the way.
pub(crate) struct Setup {
    pub(crate) keyward: PathBuf,
    pub(crate) tool: PathBuf,
    pub(crate) work: PathBuf,
    pub(crate) database_url: String,
    pub(crate) root_key_file: String,
}

impl Setup {
    pub(crate) fn new(database_url: &str, work: &str, database: &str, account: &str) -> Result<Self> {
        run("cargo", &["build", "--release", "--locked", "-p", "keyward", "-p", "keyward-bench"], &[])?;
        let target = env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
        let (keyward, tool) = (target.join("release/keyward"), target.join("release/keyward-bench"));
        let work = target.join(work);
        std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
        let (base, _) = database_url.rsplit_once('/').ok_or("DATABASE_URL has no database name")?;
        for sql in [format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"), format!("CREATE DATABASE {database}")] {
            run("psql", &[database_url, "-q", "-c", &sql], &[])?;
        }
        // Limits out of the way: the benchmarks measure verification, not refusals.
        let unlimited = "{ burst = 1000000000, per_second = 1000000000 }";
        std::fs::write(
            work.join("keyward.toml"),
            format!(
                "workers = 1\n[rate_limits]\nip = {unlimited}\nkey = {unlimited}\naccount = {unlimited}\n\
                 verify = {unlimited}\nendpoints = []\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        let database_url = format!("{base}/{database}");
        let root_key_file = work.join("root.key").to_string_lossy().into_owned();
        let db = [("DATABASE_URL", database_url.as_str()), ("KEYWARD_LOG", "warn")];
        migrated_account(&keyward, &db, account, &root_key_file, None)?;
        Ok(Self { keyward, tool, work, database_url, root_key_file })
    }
}

/// Release binaries, keyward against PostgreSQL with 10,000 keys and the bare actix-web
/// ceiling, both driven by the same load generator; then cache misses and revocation
/// propagation between two keyward instances. Method and results: docs/performance.md.
fn http_bench(database_url: &str, redis_url: &str) -> Result {
    step("HTTP benchmark: release binaries, a fresh database with 10,000 keys");
    let setup = Setup::new(database_url, "http-bench", "keyward_bench", "Bench")?;
    let (keyward, tool, work) = (setup.keyward.clone(), setup.tool.clone(), setup.work.clone());
    let path = |name: &str| work.join(name).to_string_lossy().into_owned();
    let db = [("DATABASE_URL", setup.database_url.as_str()), ("KEYWARD_LOG", "warn")];
    let root_key = setup.root_key_file.clone();
    // With `redis`, the shared-limits shape: the keys' rate limits (and quotas) in Redis.
    let serve_with = |port: u16, redis: Option<&str>, otlp: Option<&str>| {
        let listen = format!("127.0.0.1:{port}");
        let config = path("keyward.toml");
        let mut command = pinned(0, &keyward, &["serve", "--config", &config, "--listen", &listen]);
        command.envs(db).stdout(std::process::Stdio::null());
        if let Some(url) = redis {
            command.env("REDIS_URL", url);
        }
        if let Some(url) = otlp {
            // Every request traced (the default sampler), metrics every 10 s.
            command.env("OTEL_EXPORTER_OTLP_ENDPOINT", url).env("OTEL_METRIC_EXPORT_INTERVAL", "10000");
        }
        command
    };
    let serve = |port: u16| serve_with(port, None, None);
    let database_aside = StoresAside::new();
    let (port_a, port_b, port_r, port_t, port_bare) =
        (free_port()?, free_port()?, free_port()?, free_port()?, free_port()?);
    let url_a = format!("http://127.0.0.1:{port_a}");
    let instance_a = start("keyward A", serve(port_a), port_a)?;
    let keys = path("keys.txt");
    // The load generator runs on the other core.
    let tool_run = |subcommand: &str, url: &str, extra: &[&str]| {
        let mut command = pinned(1, &tool, &[subcommand, "--url", url, "--root-key", &root_key, "--keys", &keys]);
        command.args(extra);
        measure(command)
    };
    measure(pinned(
        1,
        &tool,
        &["import", "--url", &url_a, "--root-key", &root_key, "--count", "10000", "--out", &keys],
    ))?;

    step("HTTP benchmark: cache misses (each key once, one at a time, on a fresh instance)");
    let misses = tool_run("misses", &url_a, &["--count", "1000"])?;

    let bare_port = format!("127.0.0.1:{port_bare}");
    let mut bare = pinned(0, &tool, &["bare", "--listen", &bare_port, "--keys", &keys, "--root-key", &root_key]);
    bare.stdout(std::process::Stdio::null());
    let bare_server = start("the bare actix-web server", bare, port_bare)?;
    let url_bare = format!("http://{bare_port}");

    // The same database, the keys' limits shared through Redis: every verification spends
    // from its key's rate limit there (the tier's requests per minute, far above this load).
    let instance_r = start("keyward R (with Redis)", serve_with(port_r, Some(redis_url), None), port_r)?;
    let url_r = format!("http://127.0.0.1:{port_r}");
    // The single-instance shape again, exporting every span and the metrics over OTLP to
    // the bare server, which stands in for a collector (it discards what it gets).
    let instance_t = start("keyward T (with OpenTelemetry)", serve_with(port_t, None, Some(&url_bare)), port_t)?;
    let url_t = format!("http://127.0.0.1:{port_t}");

    step("HTTP benchmark: throughput, 32 connections, 10 s each, alternating (the best of two counts)");
    let closed = |url: &str, seconds: &str| tool_run("load", url, &["--connections", "32", "--seconds", seconds]);
    // Warms the caches: every key verified once.
    for url in [&url_a, &url_r, &url_t] {
        tool_run("load", url, &["--connections", "32", "--seconds", "300", "--passes", "1"])?;
    }
    closed(&url_bare, "3")?;
    let (mut ceiling, mut keyward_runs, mut redis_runs, mut traced_runs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let pause = Duration::from_secs(3);
    for _ in 0..2 {
        ceiling.push(closed_run_with_cpu(|| closed(&url_bare, "10"), bare_server.0.id(), pause)?);
        keyward_runs.push(closed_run_with_cpu(|| closed(&url_a, "10"), instance_a.0.id(), pause)?);
        redis_runs.push(closed_run_with_cpu(|| closed(&url_r, "10"), instance_r.0.id(), pause)?);
        traced_runs.push(closed_run_with_cpu(|| closed(&url_t, "10"), instance_t.0.id(), pause)?);
    }
    drop(instance_t);
    let best = |runs: &[std::collections::BTreeMap<String, String>]| {
        runs.iter().max_by(|a, b| figure(a, "rps").total_cmp(&figure(b, "rps"))).cloned().unwrap_or_default()
    };
    let (ceiling, verify, verify_redis, verify_traced) =
        (best(&ceiling), best(&keyward_runs), best(&redis_runs), best(&traced_runs));
    let half = (figure(&ceiling, "rps") / 2.0).round().max(1.0).to_string();

    step(&format!("HTTP benchmark: latency at half the ceiling's throughput ({half} req/s), 10 s"));
    // A pause before each run lets the previous one's usage flushes drain.
    let open = |url: &str, rate: &str| {
        std::thread::sleep(Duration::from_secs(3));
        tool_run("load", url, &["--connections", "32", "--seconds", "10", "--rate", rate])
    };
    let half_bare = open(&url_bare, &half)?;
    // Where keyward cannot take half the ceiling's load, its latency there is queueing only;
    // half of its own throughput says what its answers cost. Measured before the overload.
    let own_half = (figure(&verify, "rps") / 2.0).round().max(1.0).to_string();
    step(&format!("HTTP benchmark: keyward at half its own throughput ({own_half} req/s), 10 s"));
    let own_half_keyward = open(&url_a, &own_half)?;
    step(&format!(
        "HTTP benchmark: keyward with Redis at half the single instance's throughput ({own_half} req/s), 10 s"
    ));
    let own_half_redis = open(&url_r, &own_half)?;
    drop(instance_r);
    let half_keyward = open(&url_a, &half)?;
    drop(bare_server);

    step("HTTP benchmark: revocation on A seen as REVOKED on B, 100 trials");
    // The overload run just before leaves A answering queued requests and flushing their
    // usage for a while; the probe measures propagation, not that backlog.
    std::thread::sleep(Duration::from_secs(5));
    let instance_b = start("keyward B", serve(port_b), port_b)?;
    let url_b = format!("http://127.0.0.1:{port_b}");
    let propagation = tool_run("propagation", &url_a, &["--other-url", &url_b, "--trials", "100"])?;
    drop(instance_b);
    drop(instance_a);
    let database_where = if database_aside.is_some() { "on core 1, with the load generator" } else { "unpinned" };
    drop(database_aside);

    let ratio = figure(&verify, "rps") / figure(&ceiling, "rps").max(1.0);
    let row = |what: &str, r: &std::collections::BTreeMap<String, String>| {
        let get = |name: &str| r.get(name).map_or("-", String::as_str);
        eprintln!(
            "  {what:<44} {:>8} req/s  p50 {:>7} us  p99 {:>7} us  (answer p50 {:>5} us, p99 {:>6} us)  errors {}",
            get("rps"),
            get("p50_us"),
            get("p99_us"),
            get("svc_p50_us"),
            get("svc_p99_us"),
            get("errors"),
        );
    };
    step(&format!("HTTP benchmark: results (keyward and the bare server on core 0; PostgreSQL {database_where})"));
    row("bare actix-web ceiling, closed loop", &ceiling);
    row("keyward POST /v1/keys/verify, closed loop", &verify);
    row("keyward with Redis, closed loop", &verify_redis);
    row("keyward with OpenTelemetry on, closed loop", &verify_traced);
    row(&format!("bare, open loop at {half} req/s"), &half_bare);
    row(&format!("keyward, open loop at {half} req/s"), &half_keyward);
    row(&format!("keyward, open loop at {own_half} req/s"), &own_half_keyward);
    row(&format!("keyward with Redis, open loop at {own_half} req/s"), &own_half_redis);
    row("keyward, cache misses (sequential)", &misses);
    row("revocation A -> REVOKED on B (100 trials)", &propagation);
    eprintln!("  throughput ratio keyward / ceiling: {:.1}% (target: at least 80%)", ratio * 100.0);
    eprintln!(
        "  throughput ratio keyward with Redis / keyward: {:.1}% (target: at least 80%, p99 under 5 ms at {own_half} req/s)",
        figure(&verify_redis, "rps") / figure(&verify, "rps").max(1.0) * 100.0
    );
    // On two cores the load generator shares its core with PostgreSQL, which slows the
    // client during keyward's runs only: the CPU each server spends per request says what
    // the throughput ratio would be with the database on a host of its own.
    let (cpu_keyward, cpu_bare) = (figure(&verify, "cpu_us"), figure(&ceiling, "cpu_us"));
    if cpu_keyward > 0.0 {
        eprintln!(
            "  CPU per request: keyward {cpu_keyward:.1} us, bare {cpu_bare:.1} us (ratio {:.1}%); PostgreSQL {} us per verification",
            cpu_bare / cpu_keyward * 100.0,
            figure(&verify, "pg_us"),
        );
        eprintln!(
            "  CPU per request with Redis: keyward {} us, PostgreSQL {} us, Redis {} us",
            figure(&verify_redis, "cpu_us"),
            figure(&verify_redis, "pg_us"),
            figure(&verify_redis, "redis_us"),
        );
        eprintln!(
            "  CPU per request with OpenTelemetry on (every span exported): keyward {} us (off: {cpu_keyward:.1} us)",
            figure(&verify_traced, "cpu_us"),
        );
    }
    Ok(())
}
