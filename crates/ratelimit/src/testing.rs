//! A real Redis Cluster for tests: three primaries started from the `redis-server` binary
//! in a temporary directory, joined by `redis-cli --cluster create`, killed on drop; over
//! TLS with certificates made by `openssl` ([`Certificates`]) when asked.
//!
//! The nodes keep an append-only file (fsync on every write), so a node that restarts comes
//! back with its counters, as a managed cluster's node does; and they serve their slots while
//! another is away (`cluster-require-full-coverage no`), as docs/scaling.md asks of a cluster.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // Test support: failing loudly is the point.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use keyward_domain::KeyId;

use crate::redis::{hash_tag, slot};

/// A certificate authority and a server certificate it signed (for `localhost` and
/// `127.0.0.1`), plus an unrelated authority, made with the `openssl` command in `dir`.
#[derive(Debug, Clone)]
pub struct Certificates {
    /// The authority's certificate (PEM): trust it to reach the server.
    pub ca: PathBuf,
    /// The server's certificate and key (PEM).
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Another authority's certificate, which did not sign the server's.
    pub other_ca: PathBuf,
}

impl Certificates {
    pub fn make(dir: &std::path::Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .current_dir(dir)
                .args(args)
                .output()
                .expect("openssl is installed (cargo xtask ci installs it)");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let key = ["-newkey", "rsa:2048", "-nodes", "-days", "1"];
        let self_signed = |name: &str, subject: &str| {
            let (key_file, cert_file) = (format!("{name}.key"), format!("{name}.pem"));
            openssl(
                &[&["req", "-x509"], &key[..], &["-keyout", &key_file, "-out", &cert_file, "-subj", subject]].concat(),
            );
        };
        self_signed("ca", "/CN=test CA");
        self_signed("other", "/CN=other");
        openssl(
            &[&["req"], &key[..], &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat(),
        );
        // A cluster's nodes name each other by address: the certificate lists it too.
        std::fs::write(dir.join("ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            "server.pem",
            "-extfile",
            "ext",
        ]);
        Self {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            other_ca: dir.join("other.pem"),
        }
    }
}

/// A three-primary Redis Cluster on free local ports.
#[derive(Debug)]
pub struct RedisCluster {
    dir: PathBuf,
    ports: Vec<u16>,
    nodes: Vec<Option<Child>>,
    /// Set: every node speaks TLS only, to clients and on the cluster bus.
    tls: Option<Certificates>,
}

impl RedisCluster {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A cluster that speaks TLS only (`tls-cluster yes`), with `certificates`' server
    /// certificate; [`url`](Self::url) is then `rediss+cluster://`.
    pub fn start_tls(certificates: Certificates) -> Self {
        Self::start_with(Some(certificates))
    }

    fn start_with(tls: Option<Certificates>) -> Self {
        let dir = std::env::temp_dir().join(format!("keyward-cluster-{}-{}", std::process::id(), free_port()));
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut cluster = Self { dir, ports, nodes: Vec::new(), tls };
        for i in 0..cluster.ports.len() {
            std::fs::create_dir_all(cluster.node_dir(i)).unwrap();
            let child = cluster.spawn(i);
            cluster.nodes.push(Some(child));
        }
        let addresses: Vec<String> = cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = Command::new("redis-cli")
            .args(cluster.cli_tls_args())
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli is installed (cargo xtask ci installs it with redis-server)");
        assert!(created.status.success(), "redis-cli --cluster create: {}", String::from_utf8_lossy(&created.stdout));
        cluster.wait_until_ok();
        cluster
    }

    /// `REDIS_URL` for this cluster: every node as a seed.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let scheme = if self.tls.is_some() { "rediss+cluster" } else { "redis+cluster" };
        format!("{scheme}://{}", nodes.join(","))
    }

    /// The node (0, 1 or 2) whose slots hold the limits and quota of key `id`.
    pub fn node_of_key(&self, id: KeyId) -> usize {
        self.node_of_slot(self.slot_of_key(id))
    }

    /// The slot of key `id`'s entries, as the cluster itself computes it (`CLUSTER KEYSLOT`);
    /// asserted equal to the slot Keyward computes for them.
    pub fn slot_of_key(&self, id: KeyId) -> u16 {
        let tag = hash_tag(id.as_uuid().as_bytes());
        let answer = self.cli(0, &["CLUSTER", "KEYSLOT", &format!("kw:q:{{{tag}}}:0")]);
        let slot: u16 = answer.trim().parse().unwrap_or_else(|_| panic!("CLUSTER KEYSLOT answered {answer:?}"));
        assert_eq!(slot, self::slot(tag.as_bytes()), "Keyward and Redis agree on the slot");
        slot
    }

    fn node_of_slot(&self, slot: u16) -> usize {
        // `CLUSTER NODES`: `<id> <ip:port@bus> <flags> <primary> <ping> <pong> <epoch> <state> <slots…>`.
        for line in self.cli(self.live_node(), &["CLUSTER", "NODES"]).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(port) = fields.get(1).and_then(|a| a.split('@').next()).and_then(|a| a.rsplit(':').next()) else {
                continue;
            };
            let owns = fields.iter().skip(8).any(|range| {
                let (low, high) = range.split_once('-').unwrap_or((range, range));
                matches!((low.parse::<u16>(), high.parse::<u16>()), (Ok(l), Ok(h)) if (l..=h).contains(&slot))
            });
            if owns {
                return self.ports.iter().position(|p| p.to_string() == port).unwrap();
            }
        }
        panic!("no node owns slot {slot}");
    }

    /// Kills node `i` (SIGKILL: no goodbye, as a crash).
    pub fn kill_node(&mut self, i: usize) {
        let mut child = self.nodes[i].take().expect("the node is running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Starts node `i` again from its directory (its cluster configuration and append-only
    /// file), and waits until the cluster is whole.
    pub fn restart_node(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "kill it first");
        self.nodes[i] = Some(self.spawn(i));
        self.wait_until_ok();
    }

    fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.join(self.ports[i].to_string())
    }

    fn spawn(&self, i: usize) -> Child {
        let port = self.ports[i].to_string();
        let mut server = Command::new("redis-server");
        match &self.tls {
            None => server.args(["--port", &port]),
            Some(tls) => server
                .args(["--port", "0", "--tls-port", &port, "--tls-cluster", "yes", "--tls-auth-clients", "no"])
                .arg("--tls-cert-file")
                .arg(&tls.server_cert)
                .arg("--tls-key-file")
                .arg(&tls.server_key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca),
        };
        let child = server
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", "2000", "--cluster-require-full-coverage", "no"])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(self.node_dir(i))
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (cargo xtask ci installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.ports[i])).is_err() {
            assert!(Instant::now() < deadline, "redis-server on port {port} did not start");
            sleep(Duration::from_millis(10));
        }
        child
    }

    fn live_node(&self) -> usize {
        self.nodes.iter().position(Option::is_some).expect("a node is running")
    }

    /// Waits until every running node reports `cluster_state:ok` and knows every slot.
    fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = (0..self.ports.len()).filter(|&i| self.nodes[i].is_some()).all(|i| {
                let info = self.cli(i, &["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
            });
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster did not become ok: {}", self.cli(0, &["CLUSTER", "INFO"]));
            sleep(Duration::from_millis(100));
        }
    }

    fn cli(&self, i: usize, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(self.cli_tls_args())
            .args(["-p", &self.ports[i].to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn cli_tls_args(&self) -> Vec<std::ffi::OsString> {
        match &self.tls {
            None => Vec::new(),
            Some(tls) => vec!["--tls".into(), "--cacert".into(), tls.ca.clone().into_os_string()],
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in self.nodes.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    // A cluster node also listens on its port + 10000 (the cluster bus): keep both free.
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}
