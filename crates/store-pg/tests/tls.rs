//! PostgreSQL over TLS (issue #17, part 4), against a real server: a private PostgreSQL
//! started by this test with `ssl=on`, a certificate the test makes with openssl (for
//! `localhost` only), and a `pg_hba.conf` that accepts TLS connections only — so every
//! connection that succeeds here was encrypted, and `pg_stat_ssl` says so.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use diesel_async::RunQueryDsl as _;
use keyward_store_pg::{PgStore, PoolConfig, tls::Connector};

/// A PostgreSQL cluster of this test's own, listening on `localhost:port` with TLS only.
struct TlsPostgres {
    dir: PathBuf,
    port: u16,
    server: Child,
}

/// Where Debian (and most distributions) put the server's programs: initdb and postgres
/// are not on `PATH`.
fn server_bin(program: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.filter_map(Result::ok).map(|d| d.path().join("bin").join(program)).collect())
        .unwrap_or_default();
    versions.retain(|p| p.exists());
    versions.sort();
    versions.pop().unwrap_or_else(|| PathBuf::from(program))
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `program` as the `postgres` user when this runs as root (PostgreSQL refuses to run as
/// root), as this user otherwise.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn check(what: &str, output: std::io::Result<std::process::Output>) {
    let output = output.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(output.status.success(), "{what}: {}", String::from_utf8_lossy(&output.stderr));
}

impl TlsPostgres {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("keyward-pg-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let openssl = |args: &[&str]| {
            check(&format!("openssl {args:?}"), Command::new("openssl").current_dir(&dir).args(args).output());
        };
        let key = ["-newkey", "rsa:2048", "-nodes", "-days", "1"];
        openssl(
            &[&["req", "-x509"], &key[..], &["-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=test CA"]].concat(),
        );
        openssl(
            &[&["req", "-x509"], &key[..], &["-keyout", "other.key", "-out", "other.pem", "-subj", "/CN=other"]]
                .concat(),
        );
        openssl(
            &[&["req"], &key[..], &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat(),
        );
        std::fs::write(dir.join("ext"), "subjectAltName=DNS:localhost\n").unwrap();
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
        if is_root() {
            check("chown", Command::new("chown").args(["-R", "postgres"]).arg(&dir).output());
        }
        check("chmod", Command::new("chmod").args(["600"]).arg(dir.join("server.key")).output());
        let data = dir.join("data");
        check(
            "initdb",
            as_server_user(&server_bin("initdb"))
                .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
                .arg(&data)
                .output(),
        );
        // TLS connections only, over TCP; the local socket stays for nothing but startup.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
        )
        .unwrap();
        if is_root() {
            check("chown", Command::new("chown").args(["postgres"]).arg(data.join("pg_hba.conf")).output());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let server = as_server_user(&server_bin("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=localhost", "-c", "fsync=off"])
            .args(["-c", "ssl=on"])
            .arg("-c")
            .arg(format!("ssl_cert_file={}", dir.join("server.pem").display()))
            .arg("-c")
            .arg(format!("ssl_key_file={}", dir.join("server.key").display()))
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the postgres server program");
        Self { dir, port, server }
    }

    fn url(&self, host: &str, mode: &str, root: Option<&str>) -> String {
        let root = root.map(|name| format!("&sslrootcert={}", self.dir.join(name).display())).unwrap_or_default();
        format!("postgres://postgres@{host}:{}/postgres?sslmode={mode}{root}", self.port)
    }

    /// Waits until the server takes TLS connections.
    async fn ready(&self) {
        let connector = Connector::new(&self.url("localhost", "require", None)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match connector.connect().await {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => panic!("the TLS PostgreSQL never came up: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        // SIGTERM: a smart shutdown; then the files.
        let _ = Command::new("kill").arg(self.server.id().to_string()).status();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(diesel::QueryableByName, Debug)]
struct Ssl {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    ssl: bool,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    version: Option<String>,
}

/// What `pg_stat_ssl` says of a new connection made through `url`, or why none was made.
async fn ssl_of(url: &str) -> Result<Ssl, String> {
    let mut conn = Connector::new(url).map_err(|e| e.to_string())?.connect().await.map_err(|e| e.to_string())?;
    Ok(diesel::sql_query("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .get_result::<Ssl>(&mut conn)
        .await
        .unwrap())
}

#[tokio::test]
async fn every_sslmode_does_what_it_says_against_a_tls_postgres() {
    let pg = TlsPostgres::start();
    pg.ready().await;

    // verify-full through the name the certificate holds, trusting the test's authority:
    // migrations, the pool and a store call all go over TLS.
    let full = pg.url("localhost", "verify-full", Some("ca.pem"));
    let ssl = ssl_of(&full).await.unwrap();
    assert!(ssl.ssl && ssl.version.as_deref().is_some_and(|v| v.starts_with("TLSv1.")), "{ssl:?}");
    keyward_store_pg::run_migrations(&full).await.unwrap();
    let store = PgStore::connect(&full, &PoolConfig::default()).unwrap();
    store.audit_trail_owned_by_this_role().await.unwrap();
    assert_eq!(store.stats().pool_open, 1, "the pool's connection");

    // Through an address the certificate does not name: verify-full refuses, verify-ca
    // (the chain only) accepts.
    let by_address = ssl_of(&pg.url("127.0.0.1", "verify-full", Some("ca.pem"))).await.unwrap_err();
    assert!(by_address.contains("NotValidForName") || by_address.contains("not valid for name"), "{by_address}");
    assert!(ssl_of(&pg.url("127.0.0.1", "verify-ca", Some("ca.pem"))).await.unwrap().ssl);

    // A certificate of an authority nobody configured: refused under verify-ca and
    // verify-full, and under the system's authorities.
    for mode in ["verify-ca", "verify-full"] {
        let other = ssl_of(&pg.url("localhost", mode, Some("other.pem"))).await.unwrap_err();
        assert!(other.contains("UnknownIssuer"), "{mode}: {other}");
        let system = ssl_of(&pg.url("localhost", mode, None)).await.unwrap_err();
        assert!(system.contains("UnknownIssuer"), "{mode} with the system's authorities: {system}");
    }

    // require: encrypted, the certificate unchecked (libpq's meaning).
    assert!(ssl_of(&pg.url("127.0.0.1", "require", None)).await.unwrap().ssl);

    // disable: the server takes TLS only, so a plain connection is refused — the ones
    // above were encrypted because they asked to be.
    let plain = ssl_of(&pg.url("localhost", "disable", None)).await.unwrap_err();
    assert!(plain.contains("no encryption") || plain.contains("pg_hba.conf"), "{plain}");

    // A mode that does not exist is refused before any connection, without the URL.
    let bad = PgStore::connect(&pg.url("localhost", "verify-everything", None), &PoolConfig::default()).unwrap_err();
    assert!(bad.to_string().contains("verify-everything") && !bad.to_string().contains("postgres@"), "{bad}");
}
