//! `cargo xtask tidy`: the architecture of docs/ARCHITECTURE.md, checked as code.
//!
//! - the domain is pure: no IO framework anywhere in its dependency tree;
//! - every workspace crate opts into the workspace lints;
//! - the crate graph: the domain depends on no workspace crate, the runtime on the domain
//!   only, adapters on the domain and the runtime only, the dashboard on those and the
//!   HTTP adapter, nothing on the binary;
//! - frameworks stay in their adapter: diesel in store-pg, actix in http and the dashboard
//!   it serves beside (and in the binary and the examples, which wire them);
//! - no import cycle between the modules of a crate;
//! - no product source file over [`FILE_CEILING`] lines (generated ones aside).
//!
//! The workspace is read from `cargo metadata`, not from hand-parsed manifests.

use std::path::PathBuf;

use serde_json::Value;

use crate::{Result, cycles, output, root, rust_files};

/// Crates the domain must never depend on, even transitively ("the domain does no IO").
const FORBIDDEN_IN_DOMAIN: &[&str] =
    &["tokio", "diesel", "diesel-async", "deadpool", "actix-web", "actix-rt", "moka", "redis", "tokio-postgres"];

/// Adapters: they implement or drive the domain's ports, and may depend on the domain and
/// the runtime only.
const ADAPTERS: &[&str] = &[
    "keyward-store-pg",
    "keyward-store-mem",
    "keyward-ratelimit",
    "keyward-resolver",
    "keyward-http",
    "keyward-webhooks",
];

/// Pages served beside the HTTP adapter, with its state and sessions: they may depend on
/// the domain, the runtime and `keyward-http` only.
const OVER_HTTP: &[&str] = &["keyward-dashboard"];

/// Infrastructure every layer but the domain may use, and which uses no product crate:
/// telemetry (the OpenTelemetry SDK, its exporters, the Prometheus reader).
const INFRASTRUCTURE: &[&str] = &["keyward-telemetry"];

/// Crates that wire adapters together, and so may name any of them.
const WIRING: &[&str] = &["keyward", "keyward-example-embedded", "xtask", "keyward-bench"];

/// A framework and the only product crates (besides [`WIRING`]) that may depend on it.
const FRAMEWORK_HOMES: &[(&str, &[&str])] = &[
    ("diesel", &["keyward-store-pg"]),
    ("diesel-async", &["keyward-store-pg"]),
    ("diesel_migrations", &["keyward-store-pg"]),
    ("deadpool", &["keyward-store-pg"]),
    ("actix-web", &["keyward-http", "keyward-dashboard"]),
    ("actix-http", &["keyward-http"]),
    ("actix-rt", &["keyward-http"]),
    // Adapters record through the `opentelemetry` API; only the telemetry crate (and the
    // binary) chooses how it is exported.
    ("opentelemetry_sdk", &["keyward-telemetry"]),
    ("opentelemetry-otlp", &["keyward-telemetry"]),
    ("opentelemetry-prometheus", &["keyward-telemetry"]),
    ("tracing-opentelemetry", &["keyward-telemetry"]),
];

/// The most lines a source file of the product's crates may have (generated files aside):
/// past it, a file holds more than one concern (issue #14).
pub const FILE_CEILING: usize = 600;

/// One workspace member, from `cargo metadata --no-deps`.
struct Member {
    name: String,
    manifest: PathBuf,
    /// Direct normal (not dev, not build) dependencies, by package name.
    dependencies: Vec<String>,
}

fn members() -> Result<Vec<Member>> {
    let json = output("cargo", &["metadata", "--locked", "--no-deps", "--format-version", "1"])
        .ok_or("cargo metadata failed")?;
    let metadata: Value = serde_json::from_str(&json).map_err(|e| format!("cargo metadata: {e}"))?;
    let packages = metadata["packages"].as_array().ok_or("cargo metadata has no packages")?;
    let members = packages
        .iter()
        .map(|package| Member {
            name: package["name"].as_str().unwrap_or_default().to_owned(),
            manifest: PathBuf::from(package["manifest_path"].as_str().unwrap_or_default()),
            dependencies: package["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|dependency| dependency["kind"].is_null())
                .filter_map(|dependency| dependency["name"].as_str().map(str::to_owned))
                .collect(),
        })
        .collect::<Vec<_>>();
    if members.len() < 2 {
        return Err("could not read the workspace members from cargo metadata".into());
    }
    Ok(members)
}

pub fn tidy() -> Result {
    domain_is_pure()?;
    let members = members()?;
    lints_are_shared(&members)?;
    crate_graph_holds(&members)?;
    frameworks_stay_home(&members)?;
    let modules = modules_without_cycles(&members)?;
    let longest = files_within_ceiling()?;
    eprintln!(
        "tidy: the domain is pure; all {} workspace crates use the workspace lints; the crate graph holds; \
         diesel and actix stay in their adapters; no import cycle among {modules} modules; \
         no product file is over {FILE_CEILING} lines (longest: {longest})",
        members.len()
    );
    Ok(())
}

fn domain_is_pure() -> Result {
    let tree = output(
        "cargo",
        &["tree", "--locked", "-p", "keyward-domain", "-e", "normal", "--prefix", "none", "--all-features"],
    )
    .ok_or("cargo tree failed")?;
    let offending: Vec<&str> = tree
        .lines()
        .filter(|line| FORBIDDEN_IN_DOMAIN.iter().any(|name| line.split(' ').next() == Some(*name)))
        .collect();
    if offending.is_empty() {
        Ok(())
    } else {
        Err(format!("keyward-domain must stay pure but depends on: {}", offending.join(", ")))
    }
}

fn lints_are_shared(members: &[Member]) -> Result {
    let mut missing = Vec::new();
    for member in members {
        let manifest =
            std::fs::read_to_string(&member.manifest).map_err(|e| format!("{}: {e}", member.manifest.display()))?;
        if !manifest.contains("[lints]\nworkspace = true") {
            missing.push(member.name.as_str());
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("these crates do not opt into the workspace lints: {}", missing.join(", ")))
    }
}

/// Whether `from` may depend on the workspace crate `to`.
fn edge_allowed(from: &str, to: &str) -> bool {
    match from {
        "keyward-domain" => false,
        infrastructure if INFRASTRUCTURE.contains(&infrastructure) => false,
        "keyward-runtime" => to == "keyward-domain",
        adapter if ADAPTERS.contains(&adapter) => {
            matches!(to, "keyward-domain" | "keyward-runtime") || INFRASTRUCTURE.contains(&to)
        }
        page if OVER_HTTP.contains(&page) => {
            matches!(to, "keyward-domain" | "keyward-runtime" | "keyward-http") || INFRASTRUCTURE.contains(&to)
        }
        _ => to != "keyward",
    }
}

fn crate_graph_holds(members: &[Member]) -> Result {
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let broken: Vec<String> = members
        .iter()
        .flat_map(|m| m.dependencies.iter().map(move |d| (m.name.as_str(), d.as_str())))
        .filter(|(_, to)| names.contains(to))
        .filter(|(from, to)| !edge_allowed(from, to))
        .map(|(from, to)| format!("{from} -> {to}"))
        .collect();
    if broken.is_empty() {
        Ok(())
    } else {
        Err(format!("the crate graph does not allow: {} (docs/ARCHITECTURE.md)", broken.join(", ")))
    }
}

fn frameworks_stay_home(members: &[Member]) -> Result {
    let strays: Vec<String> = members
        .iter()
        .filter(|m| !WIRING.contains(&m.name.as_str()))
        .flat_map(|m| m.dependencies.iter().map(move |d| (m.name.as_str(), d.as_str())))
        .filter_map(|(from, to)| {
            let homes = FRAMEWORK_HOMES.iter().find(|(framework, _)| *framework == to)?.1;
            (!homes.contains(&from)).then(|| format!("{from} -> {to} (belongs in {})", homes.join(" or ")))
        })
        .collect();
    if strays.is_empty() { Ok(()) } else { Err(format!("frameworks outside their adapter: {}", strays.join(", "))) }
}

/// Every crate's `src/` checked for module cycles; returns how many modules were read.
fn modules_without_cycles(members: &[Member]) -> Result<usize> {
    let mut found = Vec::new();
    let mut count = 0;
    for member in members {
        let Some(src) = member.manifest.parent().map(|dir| dir.join("src")) else { continue };
        let graph = cycles::ModuleGraph::read(&src)?;
        count += graph.len();
        for cycle in graph.cycles() {
            found.push(format!("{}: {}", member.name, cycle.join(" <-> ")));
        }
    }
    if found.is_empty() {
        Ok(count)
    } else {
        Err(format!(
            "import cycles between modules (a module that needs another's parts cannot be one it provides parts to):\n  {}",
            found.join("\n  ")
        ))
    }
}

/// Checks every `crates/*/src/**.rs` but the generated schema; returns the longest.
fn files_within_ceiling() -> Result<String> {
    let mut files = Vec::new();
    for krate in std::fs::read_dir(root().join("crates")).map_err(|e| format!("crates/: {e}"))?.flatten() {
        rust_files(&krate.path().join("src"), &mut files);
    }
    let mut sizes: Vec<(usize, String)> = files
        .iter()
        .filter(|f| f.file_name().is_some_and(|n| n != "schema.rs"))
        .map(|f| {
            let lines = std::fs::read_to_string(f).map_or(0, |text| text.lines().count());
            (lines, f.strip_prefix(root()).unwrap_or(f).display().to_string())
        })
        .collect();
    sizes.sort();
    let over: Vec<String> =
        sizes.iter().filter(|(n, _)| *n > FILE_CEILING).map(|(n, f)| format!("{f} ({n})")).collect();
    if !over.is_empty() {
        return Err(format!("over {FILE_CEILING} lines: {}", over.join(", ")));
    }
    Ok(sizes.last().map(|(n, f)| format!("{f}, {n}")).unwrap_or_default())
}
