//! `cargo xtask contract [seconds]`: schemathesis against the release binary, on the
//! embedded store and on PostgreSQL, every check, the stateful phase included.
//!
//! schemathesis is pinned and installed from PyPI into a virtualenv under the target
//! directory (once per machine). Each server runs with the management limits raised for
//! the run only (a rate limit answering 429 is not what the run is about) and a working
//! account key. The seed is fixed, so a run repeats; `seconds` bounds each store's run
//! (default 60). The accepted exceptions, each with its reason, are in
//! `xtask/contract/schemathesis.toml`.

use std::{
    io::{BufRead, BufReader, Read},
    path::PathBuf,
    process::{ChildStdout, Command, Stdio},
};

use crate::{Result, Running, ensure_postgres, free_port, http::post_json, migrated_account, root, run, start, step};

/// The schemathesis this project is checked with.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";
/// The seed of every run: the same requests each time.
const SEED: &str = "20261203";
/// The owner of the PostgreSQL run's account (the embedded store's is its bootstrap owner).
const PG_OWNER: &str = "owner@contract.test";
/// The session cookie's name over plain HTTP.
const SESSION_COOKIE: &str = "keyward_session";

/// The bootstrap owner's email and one-time password, from what `keyward serve` prints on
/// the embedded store; the rest of its output is drained so the server never blocks on it.
fn bootstrap_login(printed: ChildStdout) -> Result<(String, String)> {
    let mut lines = BufReader::new(printed);
    let mut line = String::new();
    let login = loop {
        line.clear();
        if lines.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("keyward serve printed no owner login".into());
        }
        if let Some((email, password)) =
            line.strip_prefix("Owner login, shown once: ").and_then(|rest| rest.trim().split_once(" / "))
        {
            break (email.to_owned(), password.to_owned());
        }
    };
    std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
    Ok(login)
}

/// A session for the run, as a person would get one: signed in with the one-time password,
/// the password changed (which opens a new session) and confirmed again (step-up), so the
/// operations that need a recent password are reached too. Returns the cookie's value.
fn session(addr: &str, (email, one_time): &(String, String)) -> Result<String> {
    let mut random = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut random)).map_err(|e| e.to_string())?;
    let password: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let json = |value: serde_json::Value| value.to_string();
    let call = |path: &str, cookie: Option<&str>, body: String| -> Result<String> {
        let cookie = cookie.map(|value| format!("{SESSION_COOKIE}={value}"));
        let answer = post_json(addr, path, cookie.as_deref(), SESSION_COOKIE, &body)?;
        if answer.status != 200 {
            return Err(format!("POST {path} answered {}: {}", answer.status, answer.body));
        }
        Ok(answer.cookie.unwrap_or_default())
    };
    let first = call("/v1/auth/login", None, json(serde_json::json!({"email": email, "password": one_time})))?;
    let session = call(
        "/v1/account/password",
        Some(&first),
        json(serde_json::json!({"current_password": one_time, "new_password": password})),
    )?;
    call("/v1/account/verify-password", Some(&session), json(serde_json::json!({"password": password})))?;
    if session.is_empty() { Err("the password change set no session cookie".into()) } else { Ok(session) }
}

fn target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// The virtualenv's schemathesis, installed first if need be.
fn schemathesis() -> Result<PathBuf> {
    let venv = target().join("contract-venv");
    let bin = venv.join("bin/schemathesis");
    let version = SCHEMATHESIS.split("==").nth(1).unwrap_or_default();
    let installed = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(version));
    if !installed {
        step(&format!("installing {SCHEMATHESIS} into {}", venv.display()));
        let venv_str = venv.to_string_lossy().into_owned();
        run("python3", &["-m", "venv", &venv_str], &[]).map_err(|e| {
            format!("{e}: python3 with its venv module is needed (Debian: apt-get install python3-venv)")
        })?;
        let pip = venv.join("bin/pip").to_string_lossy().into_owned();
        run(&pip, &["install", "--quiet", SCHEMATHESIS], &[])?;
    }
    Ok(bin)
}

/// How long each store's run lasts.
pub enum Budget {
    /// A time budget: the run explores as far as it gets (`cargo xtask contract [seconds]`).
    Seconds(u32),
    /// Examples per operation and phase: the same requests on every machine, however fast
    /// (`cargo xtask ci`).
    Examples(u32),
}

pub fn contract(seconds: Option<&str>) -> Result {
    let seconds = seconds.unwrap_or("60");
    let seconds = seconds.parse::<u32>().map_err(|_| format!("`{seconds}` is not a number of seconds"))?;
    run_contract(&Budget::Seconds(seconds))
}

pub fn run_contract(budget: &Budget) -> Result {
    let (flag, amount, unit) = match budget {
        Budget::Seconds(n) => ("--max-time", n.to_string(), "s"),
        Budget::Examples(n) => ("--max-examples", n.to_string(), " examples per operation"),
    };
    let schemathesis = schemathesis()?;
    let database_url = ensure_postgres()?;
    step("contract: release binary");
    run("cargo", &["build", "--release", "--locked", "-p", "keyward"], &[])?;
    let keyward = target().join("release/keyward");
    let work = target().join("contract");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let path = |name: &str| work.join(name).to_string_lossy().into_owned();
    let unlimited = "{ burst = 1000000000, per_second = 1000000000 }";
    std::fs::write(
        path("keyward.toml"),
        format!(
            "[rate_limits]\nip = {unlimited}\nkey = {unlimited}\naccount = {unlimited}\nverify = {unlimited}\n\
             endpoints = []\nimported_keys = {{ limit = 1000000000, period_seconds = 3600 }}\n\
             leak_reports = {{ limit = 1000000000, period_seconds = 60 }}\n"
        ),
    )
    .map_err(|e| e.to_string())?;

    // The PostgreSQL run's database, fresh, migrated, with one account.
    let (base, _) = database_url.rsplit_once('/').ok_or("DATABASE_URL has no database name")?;
    let contract_url = format!("{base}/keyward_contract");
    for sql in ["DROP DATABASE IF EXISTS keyward_contract WITH (FORCE)", "CREATE DATABASE keyward_contract"] {
        run("psql", &[&database_url, "-q", "-c", sql], &[])?;
    }
    let pg = [("DATABASE_URL", contract_url.as_str()), ("KEYWARD_LOG", "warn")];
    let pg_key = path("postgres.key");
    let printed = migrated_account(&keyward, &pg, "Contract", &pg_key, Some(PG_OWNER))?;
    let pg_login = printed
        .lines()
        .find_map(|line| line.strip_prefix("One-time password, shown once: "))
        .map(|password| (PG_OWNER.to_owned(), password.trim().to_owned()))
        .ok_or("keyward account create printed no one-time password")?;

    let mut failed = Vec::new();
    for store in ["memory", "postgres"] {
        step(&format!("contract: schemathesis against keyward on {store}, {amount}{unit}"));
        let port = free_port()?;
        let listen = format!("127.0.0.1:{port}");
        let config = path("keyward.toml");
        let key_file = if store == "memory" { path("memory.key") } else { pg_key.clone() };
        let mut serve = Command::new(&keyward);
        serve.args(["serve", "--config", &config, "--listen", &listen]).stdout(Stdio::piped());
        if store == "memory" {
            serve.args(["--bootstrap-key-file", &key_file]).env_remove("DATABASE_URL").env("KEYWARD_LOG", "warn");
        } else {
            serve.envs(pg);
        }
        let mut server: Running = start("keyward", serve, port)?;
        let printed = server.0.stdout.take().ok_or("keyward's output is not piped")?;
        let login = if store == "memory" { bootstrap_login(printed)? } else { pg_login.clone() };
        let session = session(&listen, &login)?;
        let key = std::fs::read_to_string(&key_file).map_err(|e| format!("{key_file}: {e}"))?;
        let config = root().join("xtask/contract/schemathesis.toml").to_string_lossy().into_owned();
        let status = Command::new(&schemathesis)
            .args(["--config-file", &config])
            // Every check is on unless the configuration turns it off (`--checks all` would
            // override the accepted exceptions); the key reaches schemathesis through the
            // environment, not its command line, which `ps` shows.
            .args(["run", &format!("http://{listen}/v1/openapi.json"), "--seed", SEED, flag, &amount])
            .env("KEYWARD_CONTRACT_KEY", key.trim())
            .env("KEYWARD_CONTRACT_SESSION", &session)
            .args(["--report", "junit", "--report-dir", &path(&format!("report-{store}"))])
            .current_dir(&work)
            .status()
            .map_err(|e| format!("cannot run schemathesis: {e}"))?;
        if !status.success() {
            failed.push(store);
        }
    }
    if failed.is_empty() {
        eprintln!("\ncontract: schemathesis found no failure on either store");
        Ok(())
    } else {
        Err(format!("schemathesis found failures on: {} (reports in {})", failed.join(", "), work.display()))
    }
}
