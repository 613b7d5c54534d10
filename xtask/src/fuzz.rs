//! `cargo xtask fuzz [seconds]`: every target in `fuzz/fuzz_targets/` under libFuzzer, for
//! `seconds` each (60 by default), starting from the committed corpus in `fuzz/corpus/`.
//! `cargo xtask ci` runs each for a few seconds.
//!
//! cargo-fuzz is installed from crates.io when missing. Its instrumentation takes `-Z` flags,
//! which the pinned stable toolchain accepts only with `RUSTC_BOOTSTRAP=1` (no nightly can
//! be downloaded here); that is set for these builds alone, never for the product's.
//! Without a sanitizer (`-s none`): the code under test is safe Rust, and AddressSanitizer
//! would slow every run for no finding it could make. Debug assertions are on (`-a`), so an
//! overflow is a crash.
//!
//! New inputs a run finds go to `target/fuzz/corpus/<target>`, not into the committed
//! corpus (copy the interesting ones over by hand); a crash leaves its input in
//! `fuzz/artifacts/<target>/` and fails the run.

use std::path::PathBuf;

use crate::{Result, root, run, step, succeeds};

const DEFAULT_SECONDS: u32 = 60;

pub fn fuzz(seconds: Option<&str>) -> Result {
    let seconds = match seconds {
        Some(s) => s.parse().map_err(|_| format!("seconds must be a whole number, not {s:?}"))?,
        None => DEFAULT_SECONDS,
    };
    run_fuzz(seconds)
}

/// Builds every target and runs each for `seconds`.
pub fn run_fuzz(seconds: u32) -> Result {
    let started = std::time::Instant::now();
    ensure_cargo_fuzz()?;
    let targets = targets()?;
    let dir = root().join("fuzz");
    let cargo_target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let target_dir = cargo_target.join("fuzz");
    let env = [("RUSTC_BOOTSTRAP", "1"), ("CARGO_TARGET_DIR", target_dir.to_str().unwrap_or("target/fuzz"))];
    step(&format!("fuzz: build {} targets", targets.len()));
    in_dir(&dir, &["fuzz", "build", "-s", "none", "-a"], &env)?;
    for target in &targets {
        step(&format!("fuzz: {target} for {seconds} s"));
        let found = target_dir.join("corpus").join(target);
        std::fs::create_dir_all(&found).map_err(|e| format!("cannot create {}: {e}", found.display()))?;
        let (found, committed) = (found.to_string_lossy().into_owned(), format!("corpus/{target}"));
        let max_time = format!("-max_total_time={seconds}");
        in_dir(&dir, &["fuzz", "run", "-s", "none", "-a", target, &found, &committed, "--", &max_time], &env)
            .map_err(|e| format!("{e}: the crashing input is in fuzz/artifacts/{target}/"))?;
    }
    eprintln!("fuzz: {} targets, {seconds} s each, no crash ({:.0?})", targets.len(), started.elapsed());
    Ok(())
}

/// The targets: one file each in `fuzz/fuzz_targets/`, sorted.
fn targets() -> Result<Vec<String>> {
    let dir = root().join("fuzz/fuzz_targets");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut targets: Vec<String> = entries
        .filter_map(|e| e.ok().map(|e| PathBuf::from(e.file_name())))
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    targets.sort();
    Ok(targets)
}

fn ensure_cargo_fuzz() -> Result {
    if succeeds("cargo", &["fuzz", "--version"]) {
        return Ok(());
    }
    eprintln!("cargo-fuzz is not installed; installing it from crates.io (once per machine)");
    run("cargo", &["install", "--locked", "cargo-fuzz"], &[])
}

fn in_dir(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Result {
    let status = std::process::Command::new("cargo")
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .status()
        .map_err(|e| format!("cannot run cargo {}: {e}", args.join(" ")))?;
    if status.success() { Ok(()) } else { Err(format!("cargo {} failed ({status})", args.join(" "))) }
}
