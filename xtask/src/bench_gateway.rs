//! `cargo xtask bench gateway` (issue #31): the same closed-loop load (32 connections)
//! through nginx to an upstream that answers `200 ok`, once without authentication and once
//! with the documented `auth_request` configuration (`examples/gateways/nginx/keyward.conf`)
//! asking a release `keyward` on PostgreSQL, its keys cached; then both at a fixed 5,000
//! requests a second for the latency. One run on this machine, everything on its two cores:
//! docs/performance.md says what the figures mean.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use crate::{
    Result,
    bench::{Setup, figure, measure},
    free_port, root, start, step,
};

/// nginx with `server` (a `server {}` block) as its only site, from `dir`.
fn nginx(dir: &Path, name: &str, server: &str, port: u16) -> Result<crate::Running> {
    let site = dir.join(format!("{name}.conf"));
    std::fs::write(&site, server).map_err(|e| e.to_string())?;
    let d = dir.join(name);
    std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
    let d = d.display();
    let main = format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 100000000;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           include {};\n}}\n",
        site.display()
    );
    let config = dir.join(format!("{name}-nginx.conf"));
    std::fs::write(&config, main).map_err(|e| e.to_string())?;
    let mut command = Command::new("nginx");
    command.arg("-c").arg(&config).stdout(Stdio::null()).stderr(Stdio::null());
    start("nginx", command, port)
}

pub fn gateway_bench(database_url: &str) -> Result {
    step("gateway benchmark: release binaries, a fresh database, a keyspace with one rule, 1,000 keys");
    let setup = Setup::new(database_url, "gateway-bench", "keyward_bench_gateway", "Gateway bench")?;
    let (keyward, tool, work) = (setup.keyward.clone(), setup.tool.clone(), setup.work.clone());
    let path = |name: &str| work.join(name).to_string_lossy().into_owned();
    let db = [("DATABASE_URL", setup.database_url.as_str()), ("KEYWARD_LOG", "warn")];
    let root_key_file = setup.root_key_file.clone();
    let root_key = std::fs::read_to_string(&root_key_file).map_err(|e| e.to_string())?.trim().to_owned();
    let (keyward_port, echo_port, plain_port, auth_port) = (free_port()?, free_port()?, free_port()?, free_port()?);
    let keyward_addr = format!("127.0.0.1:{keyward_port}");
    let mut serve = Command::new(&keyward);
    serve
        .args(["serve", "--config", &path("keyward.toml"), "--listen", &keyward_addr])
        .envs(db)
        .env("KEYWARD_TRUSTED_PROXIES", "127.0.0.1/32")
        .stdout(Stdio::null());
    let _keyward = start("keyward", serve, keyward_port)?;
    let created =
        crate::http::post_bearer(&keyward_addr, "/v1/keyspaces", &root_key, r#"{"name":"api","prefix":"gw"}"#)?;
    let keyspace: serde_json::Value = serde_json::from_str(&created.body).map_err(|e| e.to_string())?;
    let keyspace = keyspace["id"].as_str().ok_or_else(|| format!("no keyspace: {}", created.body))?.to_owned();
    let table = r#"{"default":"deny","rules":[{"methods":["GET"],"path":"/v1/servers/**","scopes":["server:list"]}]}"#;
    let put =
        crate::http::send_bearer("PUT", &keyward_addr, &format!("/v1/keyspaces/{keyspace}/routes"), &root_key, table)?;
    if put.status != 200 {
        return Err(format!("PUT routes answered {}: {}", put.status, put.body));
    }
    let keys = path("keys.txt");
    let url = format!("http://{keyward_addr}");
    measure({
        let mut c = Command::new(&tool);
        c.args(["import", "--url", &url, "--root-key", &root_key_file, "--count", "1000", "--out", &keys]);
        c.args(["--keyspace", &keyspace]);
        c
    })?;

    step("gateway benchmark: the upstream and nginx, without and with auth_request");
    let mut echo = Command::new(&tool);
    echo.args(["echo", "--listen", &format!("127.0.0.1:{echo_port}")]).stdout(Stdio::null());
    let _echo = start("the upstream", echo, echo_port)?;
    let plain = format!(
        "upstream api {{ server 127.0.0.1:{echo_port}; keepalive 32; }}\n\
         server {{\n  listen 127.0.0.1:{plain_port};\n  location / {{\n    proxy_http_version 1.1;\n\
             proxy_set_header Connection \"\";\n    proxy_pass http://api;\n  }}\n}}\n"
    );
    let template =
        std::fs::read_to_string(root().join("examples/gateways/nginx/keyward.conf")).map_err(|e| e.to_string())?;
    let auth = template
        .replace("${LISTEN_ADDR}", &format!("127.0.0.1:{auth_port}"))
        .replace("${KEYWARD_ADDR}", &keyward_addr)
        .replace("${KEYSPACE_ID}", &keyspace)
        .replace("${UPSTREAM_ADDR}", &format!("127.0.0.1:{echo_port}"));
    let _plain = nginx(&work, "plain", &plain, plain_port)?;
    let _auth = nginx(&work, "auth", &auth, auth_port)?;

    let load = |port: u16, extra: &[&str]| {
        let mut c = Command::new(&tool);
        c.args(["load", "--url", &format!("http://127.0.0.1:{port}"), "--keys", &keys, "--path", "/v1/servers/1"]);
        c.args(["--connections", "32"]).args(extra);
        measure(c)
    };
    // Warm: every key once through the authorizer (the cache), then both for real.
    load(auth_port, &["--seconds", "3"])?;
    let mut rows = Vec::new();
    for (name, port) in [("nginx → upstream", plain_port), ("nginx + Keyward auth_request → upstream", auth_port)] {
        let closed = load(port, &["--seconds", "10"])?;
        let paced = load(port, &["--seconds", "10", "--rate", "5000"])?;
        rows.push((name, closed, paced));
    }
    eprintln!("\n| path | closed loop, 32 connections | errors | at 5,000 req/s: p50 | p99 |\n|---|---|---|---|---|");
    for (name, closed, paced) in &rows {
        eprintln!(
            "| {name} | {:.0} req/s (p50 {} µs, p99 {} µs) | {} | {} µs | {} µs |",
            figure(closed, "rps"),
            closed.get("p50_us").map_or("?", String::as_str),
            closed.get("p99_us").map_or("?", String::as_str),
            figure(closed, "errors") + figure(paced, "errors"),
            paced.get("p50_us").map_or("?", String::as_str),
            paced.get("p99_us").map_or("?", String::as_str),
        );
    }
    let kept = figure(&rows[1].1, "rps") / figure(&rows[0].1, "rps").max(1.0);
    eprintln!("\nthe protected route keeps {:.0}% of the unprotected throughput (goal: 70%)", kept * 100.0);
    Ok(())
}
