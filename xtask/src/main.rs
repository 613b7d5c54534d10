//! Project automation, run as `cargo xtask <task>` (see `.cargo/config.toml`):
//!
//! - `ci`: everything CI checks — formatting, clippy with warnings denied, `tidy`, the whole
//!   test suite against a real PostgreSQL and Redis (found, started or installed), the
//!   browser tests in Debian's headless Chromium and Firefox (installed when missing), schemathesis
//!   against the release binary (`contract`), the fuzz targets briefly, and cargo-deny.
//! - `dev`: migrate a local PostgreSQL and serve against it.
//! - `codegen [--check]`: regenerate (or check) `crates/store-pg/src/schema.rs` from the
//!   migrations and `docs/openapi.json` from the code.
//! - `tidy`: architecture checks that are cheaper as code than as review comments.
//! - `bench [criterion | http]`: the criterion benchmarks and the HTTP benchmark (release
//!   builds; keyward and a bare actix-web server under the same load); figures go to
//!   `docs/performance.md`.
//! - `contract [seconds]`: schemathesis (pinned, in a virtualenv it creates) against the
//!   release binary on both stores.
//! - `image`: the container image built from `Dockerfile` with buildah over base images
//!   assembled here, run against PostgreSQL and Redis with compose.yaml's environment, and
//!   the deployment files linted (`image.rs`).
//! - `fuzz [seconds]`: every cargo-fuzz target in `fuzz/` for `seconds` each (60 by
//!   default), from the committed corpus.
//!
//! It depends on std and serde_json (to read `cargo metadata`), so it builds in seconds on
//! a fresh clone.

use std::{
    env,
    net::{TcpStream, ToSocketAddrs},
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

mod bench;
mod bench_gateway;
mod browsers;
mod contract;
mod cycles;
mod fuzz;
mod http;
mod image;
mod tidy;

type Result<T = ()> = std::result::Result<T, String>;

/// schemathesis examples per operation and phase in `cargo xtask ci`.
const CONTRACT_EXAMPLES: u32 = 20;
/// Seconds each fuzz target runs in `cargo xtask ci`.
const CI_FUZZ_SECONDS: u32 = 10;
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const PRIVATE_PORT: u16 = 54329;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("dev") => dev(),
        Some("codegen") => codegen(args.iter().any(|a| a == "--check")),
        Some("tidy") => tidy::tidy(),
        Some("bench") if args.get(1).map(String::as_str) == Some("gateway") => {
            ensure_postgres().and_then(|url| bench_gateway::gateway_bench(&url))
        }
        Some("bench") => bench::bench(args.get(1).map(String::as_str)),
        Some("contract") => contract::contract(args.get(1).map(String::as_str)),
        Some("fuzz") => fuzz::fuzz(args.get(1).map(String::as_str)),
        Some("image") => image::image(),
        _ => Err("usage: cargo xtask <ci | dev | codegen [--check] | tidy | bench [criterion | http] \
                  | contract [seconds] | fuzz [seconds] | image>"
            .into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("\nxtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

fn step(name: &str) {
    eprintln!("\n==> {name}");
}

/// Runs a command in the workspace root; fails with its name when it fails.
fn run(program: &str, args: &[&str], envs: &[(&str, &str)]) -> Result {
    let status = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("`{program} {}` failed ({status})", args.join(" "))) }
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).output().is_ok_and(|o| o.status.success())
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).current_dir(root()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ci() -> Result {
    let started = Instant::now();
    let database_url = ensure_postgres()?;
    let redis_url = ensure_redis()?;
    browsers::ensure_browsers()?;
    ensure_openssl()?;
    ensure_proxies()?;
    let db = [("DATABASE_URL", database_url.as_str()), ("REDIS_URL", redis_url.as_str())];

    step("format");
    run("cargo", &["fmt", "--all", "--check"], &[])?;
    step("clippy");
    run("cargo", &["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"], &[])?;
    step("tidy");
    tidy::tidy()?;
    step(&format!("tests (PostgreSQL at {}, Redis at {})", redact(&database_url), redact(&redis_url)));
    if succeeds("cargo", &["nextest", "--version"]) {
        run("cargo", &["nextest", "run", "--workspace", "--locked", "--no-fail-fast"], &db)?;
    } else {
        eprintln!("cargo-nextest is not installed; using cargo test");
        run("cargo", &["test", "--workspace", "--locked", "--no-fail-fast"], &db)?;
    }
    // The OpenAPI document as a contract: schemathesis against the release binary, both
    // stores, a fixed number of examples so every run makes the same requests.
    contract::run_contract(&contract::Budget::Examples(CONTRACT_EXAMPLES))?;
    // Every parser of outside input, briefly, from the committed corpus.
    fuzz::run_fuzz(CI_FUZZ_SECONDS)?;
    // The deployment files always; the image where buildah works.
    image::lint()?;
    if image::buildah_works() {
        image::build_and_run()?;
    } else {
        eprintln!("warning: buildah does not work on this machine; the image was not built (cargo xtask image)");
    }
    step("dependency policy (cargo deny check bans licenses sources)");
    if succeeds("cargo", &["deny", "--version"]) || install_cargo_deny() {
        run("cargo", &["deny", "--all-features", "check", "bans", "licenses", "sources"], &[])?;
    } else {
        eprintln!("warning: cargo-deny is not installed and could not be installed; dependency policy not checked");
    }
    eprintln!("\nci passed in {:.0?}", started.elapsed());
    Ok(())
}

/// `what` found by `have`, or installed as root with apt-get; otherwise an error that says
/// what to install.
pub(crate) fn ensure_packages(what: &str, packages: &[&str], have: impl Fn() -> bool, or_else: &str) -> Result {
    if !have() && is_root() && succeeds("sh", &["-c", "command -v apt-get"]) {
        step(&format!("installing {what} from the distribution's packages (apt-get install {})", packages.join(" ")));
        run("apt-get", &["update", "-q"], &[])?;
        let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
        args.extend_from_slice(packages);
        run("apt-get", &args, &[("DEBIAN_FRONTEND", "noninteractive")])?;
    }
    if have() {
        Ok(())
    } else {
        Err(format!(
            "the tests need {what}. Install them (Debian/Ubuntu: `sudo apt-get install {}`), or {or_else}, \
             and run `cargo xtask ci` again.",
            packages.join(" ")
        ))
    }
}

/// The openssl command line: the TLS tests make their certificates with it.
fn ensure_openssl() -> Result {
    ensure_packages("the openssl command", &["openssl"], || succeeds("openssl", &["version"]), "put it on PATH")
}

/// nginx and Caddy: the gateway tests run the configurations of `examples/gateways/` in them.
fn ensure_proxies() -> Result {
    let have = || {
        ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"].iter().any(|p| std::path::Path::new(p).exists())
            && succeeds("caddy", &["version"])
    };
    ensure_packages("nginx and Caddy", &["nginx", "caddy"], have, "put nginx and caddy on PATH")
}

fn install_cargo_deny() -> bool {
    eprintln!("cargo-deny is not installed; installing it from crates.io (once per machine)");
    run("cargo", &["install", "--locked", "cargo-deny"], &[]).is_ok()
}

// --- servers the benchmark and the contract tests start ------------------------------------

/// A child process that is stopped (SIGTERM, then waited for) however the benchmark ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Migrates the database `db` names and creates an enterprise account in it, its key
/// written to `key_file`, with an owner of that email if one is given. Returns what the
/// command printed (the key, the owner's one-time password), kept out of this tool's
/// output for the caller to read what it needs.
fn migrated_account(
    keyward: &Path,
    db: &[(&str, &str)],
    name: &str,
    key_file: &str,
    owner: Option<&str>,
) -> Result<String> {
    run(&keyward.to_string_lossy(), &["migrate"], db)?;
    let mut create = Command::new(keyward);
    create.args(["account", "create", "--name", name, "--plan", "enterprise", "--key-file", key_file]);
    if let Some(email) = owner {
        create.args(["--owner-email", email]);
    }
    let created = create.envs(db.iter().copied()).output().map_err(|e| format!("cannot run keyward: {e}"))?;
    if created.status.success() {
        Ok(String::from_utf8_lossy(&created.stdout).into_owned())
    } else {
        Err(format!("keyward account create failed: {}", String::from_utf8_lossy(&created.stderr).trim()))
    }
}

fn start(name: &'static str, mut command: Command, port: u16) -> Result<Running> {
    let child = command.spawn().map_err(|e| format!("cannot start {name}: {e}"))?;
    let running = Running(child);
    if wait_reachable(&format!("http://127.0.0.1:{port}"), Duration::from_secs(30)) {
        Ok(running)
    } else {
        Err(format!("{name} did not start listening on port {port}"))
    }
}

fn dev() -> Result {
    let database_url = ensure_postgres()?;
    let db = [("DATABASE_URL", database_url.as_str())];
    run("cargo", &["run", "--release", "-p", "keyward", "--", "migrate"], &db)?;
    run("cargo", &["run", "--release", "-p", "keyward", "--", "serve"], &db)
}

fn codegen(check: bool) -> Result {
    let database_url = ensure_postgres()?;
    let mode = if check { "check" } else { "write" };
    let envs = [("DATABASE_URL", database_url.as_str()), ("KEYWARD_CODEGEN", mode)];
    step(&format!("codegen ({mode}): crates/store-pg/src/schema.rs"));
    run("cargo", &["test", "--locked", "-p", "keyward-store-pg", "--test", "codegen"], &envs)?;
    step(&format!("codegen ({mode}): docs/openapi.json"));
    run("cargo", &["test", "--locked", "-p", "keyward-http", "--test", "codegen"], &envs)
}

/// Every `.rs` file under `dir`, recursively.
pub(crate) fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

// --- PostgreSQL ---------------------------------------------------------------------------

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => match url[scheme + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

/// `host:port` of a `postgres://user[:password]@host[:port]/db` URL.
fn host_port(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let host = rest.split(['/', '?']).next()?;
    let default_port = if scheme.starts_with("redis") { 6379 } else { 5432 };
    Some(if host.contains(':') { host.to_owned() } else { format!("{host}:{default_port}") })
}

fn reachable(url: &str) -> bool {
    let Some(addrs) = host_port(url).and_then(|hp| hp.to_socket_addrs().ok()) else { return false };
    addrs.into_iter().any(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok())
}

fn wait_reachable(url: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if reachable(url) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// A PostgreSQL to test against: `DATABASE_URL` if it answers; else the machine's Debian
/// cluster, started; else a private cluster from the system's binaries; else, as root on
/// Debian, installed from the distribution's packages. Fails saying what to install.
fn ensure_postgres() -> Result<String> {
    let url = env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    if reachable(&url) {
        return Ok(url);
    }
    eprintln!("PostgreSQL is not reachable at {}; looking for a server to start", redact(&url));
    if let Some(url) = start_debian_cluster(&url) {
        return Ok(url);
    }
    if let Some(bindir) = find_pg_bindir() {
        return start_private_cluster(&bindir);
    }
    if is_root() && succeeds("sh", &["-c", "command -v apt-get"]) {
        step("installing PostgreSQL from the distribution's packages (apt-get install postgresql)");
        run("apt-get", &["update", "-q"], &[])?;
        run(
            "apt-get",
            &["install", "-y", "-q", "--no-install-recommends", "postgresql"],
            &[("DEBIAN_FRONTEND", "noninteractive")],
        )?;
        if let Some(url) = start_debian_cluster(&url) {
            return Ok(url);
        }
        if let Some(bindir) = find_pg_bindir() {
            return start_private_cluster(&bindir);
        }
    }
    Err(format!(
        "PostgreSQL is not reachable at {} and no PostgreSQL server is installed.\n\
         Install one (Debian/Ubuntu: `sudo apt-get install postgresql`; Fedora: `sudo dnf install postgresql-server`; \
         macOS: `brew install postgresql@15`) or set DATABASE_URL to a server you can reach, then run `cargo xtask ci` again.",
        redact(&url)
    ))
}

fn is_root() -> bool {
    output("id", &["-u"]).is_some_and(|uid| uid.trim() == "0")
}

/// Starts the clusters `pg_lsclusters` lists (Debian's postgresql-common).
fn start_debian_cluster(url: &str) -> Option<String> {
    let clusters = output("pg_lsclusters", &["--no-header"])?;
    for line in clusters.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [version, name, _port, status, ..] = fields.as_slice()
            && *status != "online"
        {
            eprintln!("starting PostgreSQL cluster {version}/{name}");
            let _ = run("pg_ctlcluster", &["--skip-systemctl-redirect", version, name, "start"], &[]);
        }
    }
    wait_reachable(url, Duration::from_secs(15)).then(|| url.to_owned())
}

fn find_pg_bindir() -> Option<PathBuf> {
    if let Some(dir) = output("pg_config", &["--bindir"]) {
        let dir = PathBuf::from(dir.trim());
        if dir.join("initdb").exists() {
            return Some(dir);
        }
    }
    let mut versions: Vec<PathBuf> =
        std::fs::read_dir("/usr/lib/postgresql").ok()?.filter_map(|e| e.ok().map(|e| e.path().join("bin"))).collect();
    versions.sort();
    versions.into_iter().rev().find(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
}

/// A cluster of our own under `target/keyward-pg`, on port 54329, trust authentication.
/// PostgreSQL refuses to run as root, so as root it runs as the `postgres` user.
fn start_private_cluster(bindir: &Path) -> Result<String> {
    let data = root().join("target/keyward-pg");
    let url = format!("postgres://postgres@127.0.0.1:{PRIVATE_PORT}/postgres");
    if reachable(&url) {
        return Ok(url);
    }
    step(&format!("starting a private PostgreSQL from {} in {}", bindir.display(), data.display()));
    let as_user = |program: &Path, args: &[&str]| -> Result {
        let program = program.to_string_lossy().into_owned();
        if is_root() {
            let mut full = vec!["-u", "postgres", "--", program.as_str()];
            full.extend_from_slice(args);
            run("runuser", &full, &[])
        } else {
            run(&program, args, &[])
        }
    };
    let data_str = data.to_string_lossy().into_owned();
    if !data.join("PG_VERSION").exists() {
        std::fs::create_dir_all(&data).map_err(|e| format!("cannot create {data_str}: {e}"))?;
        if is_root() {
            run("chown", &["-R", "postgres", &data_str], &[])?;
        }
        as_user(&bindir.join("initdb"), &["-D", &data_str, "-U", "postgres", "--auth=trust", "-E", "UTF8"])?;
    }
    let options = format!("-p {PRIVATE_PORT} -k {data_str} -c listen_addresses=127.0.0.1 -c fsync=off");
    let log = format!("{data_str}/server.log");
    as_user(&bindir.join("pg_ctl"), &["-D", &data_str, "-o", &options, "-l", &log, "-w", "start"])?;
    if wait_reachable(&url, Duration::from_secs(15)) {
        Ok(url)
    } else {
        Err(format!("the private PostgreSQL did not start; see {log}"))
    }
}

// --- Chromium -------------------------------------------------------------------------------

// --- Redis --------------------------------------------------------------------------------

const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// A Redis to test against, and the `redis-server` binary (tests start private servers to
/// kill them): `REDIS_URL` if it answers, else a server started on 127.0.0.1:6379; as root on
/// Debian, installed first if missing. Fails saying what to install.
fn ensure_redis() -> Result<String> {
    let url = env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned());
    let have_binary = || succeeds("sh", &["-c", "command -v redis-server"]);
    if !have_binary() && is_root() && succeeds("sh", &["-c", "command -v apt-get"]) {
        step("installing Redis from the distribution's packages (apt-get install redis-server)");
        run("apt-get", &["update", "-q"], &[])?;
        run(
            "apt-get",
            &["install", "-y", "-q", "--no-install-recommends", "redis-server"],
            &[("DEBIAN_FRONTEND", "noninteractive")],
        )?;
    }
    if !have_binary() {
        return Err("the tests need redis-server (they start and stop private Redis servers). Install it \
             (Debian/Ubuntu: `sudo apt-get install redis-server`; Fedora: `sudo dnf install redis`; macOS: `brew install redis`) \
             and run `cargo xtask ci` again."
            .into());
    }
    if reachable(&url) {
        return Ok(url);
    }
    eprintln!("Redis is not reachable at {}; starting one on 127.0.0.1:6379", redact(&url));
    run(
        "redis-server",
        &["--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379", "--save", "", "--appendonly", "no"],
        &[],
    )?;
    if wait_reachable(DEFAULT_REDIS_URL, Duration::from_secs(10)) {
        Ok(DEFAULT_REDIS_URL.to_owned())
    } else {
        Err("redis-server did not start on 127.0.0.1:6379".into())
    }
}
