//! Where the decisions go: one Redis server, or a Redis Cluster. Both are reached through
//! one multiplexed connection per instance (per node, for a cluster) that reconnects by
//! itself; neither is contacted before the first decision, so Keyward starts while Redis
//! is down.
//!
//! `REDIS_URL` names a cluster as `redis+cluster://[user:password@]host:port,host:port,…`
//! (`rediss+cluster://` over TLS): the seed nodes, from which the client learns the rest.
//! Anything else is a single server's URL. `rediss://` is TLS (rustls): the server's
//! certificate must chain to the system's authorities or to the given ones, and name the
//! host. redis-rs's `#insecure`, which would skip both, is refused when the connection is
//! made (at start): an unverified TLS connection is a man in the middle's, and this build
//! has no way to honour it — give a private authority in `REDIS_CA_FILE` instead.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use redis::{
    Client, RedisError, ScriptInvocation, TlsCertificates,
    aio::{ConnectionManager, ConnectionManagerConfig},
    cluster::{ClusterClient, ClusterConfig},
    cluster_async::ClusterConnection,
};

/// How many slots a cluster has (`CLUSTER KEYSLOT` answers below it).
const SLOTS: u16 = 16_384;
/// The cluster's slots in groups of contiguous slots, each with its own circuit: a cluster
/// node owns ranges of slots, so while one node is away the others' groups stay closed.
const SLOT_GROUPS: usize = 64;

/// One server, or a cluster.
#[derive(Clone)]
pub(super) enum Connection {
    Single(ConnectionManager),
    /// Built on the first decision (the client needs a running Tokio runtime) and kept.
    Cluster {
        client: Arc<ClusterClient>,
        config: ClusterConfig,
        conn: Arc<OnceLock<ClusterConnection>>,
    },
}

impl Connection {
    /// The connection `url` names; nothing is contacted yet. `ca_pem`: the certificate
    /// authorities (PEM) a TLS server's certificate must chain to, instead of the system's.
    pub(super) fn open(url: &str, timeout: Duration, ca_pem: Option<&[u8]>) -> Result<Self, RedisError> {
        if skips_verification(url) {
            return Err(RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "`insecure` (skipping the check of the Redis server's certificate) is refused: \
                 give the authority that signed it in REDIS_CA_FILE",
            )));
        }
        // redis-rs builds its TLS configuration with the process's default provider: make
        // it ring (the one this build has), unless the embedding program chose already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let roots = || TlsCertificates { client_tls: None, root_cert: ca_pem.map(<[u8]>::to_vec) };
        if let Some(nodes) = cluster_nodes(url) {
            let mut builder = ClusterClient::builder(nodes);
            if ca_pem.is_some() {
                builder = builder.certs(roots());
            }
            let client = builder
                .connection_timeout(timeout)
                .response_timeout(timeout)
                // A slot moved or a node restarting: retry briefly, within the caller's timeout.
                .retries(2)
                .max_retry_wait(250)
                .build()?;
            let config = ClusterConfig::new().set_connection_timeout(timeout).set_response_timeout(timeout);
            return Ok(Self::Cluster { client: Arc::new(client), config, conn: Arc::new(OnceLock::new()) });
        }
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let client = if ca_pem.is_some() { Client::build_with_tls(url, roots())? } else { Client::open(url)? };
        Ok(Self::Single(ConnectionManager::new_lazy_with_config(client, config)?))
    }

    /// Runs `invocation` (`EVALSHA`, loading the script where a node lacks it).
    pub(super) async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, RedisError> {
        match self {
            Self::Single(conn) => invocation.invoke_async(&mut conn.clone()).await,
            Self::Cluster { client, config, conn } => {
                let conn = conn.get_or_init(|| client.get_pending_async_connection_with_config(config.clone()));
                // `EVALSHA` goes to the node of its keys; the `SCRIPT LOAD` after a
                // `NOSCRIPT` goes to every primary.
                invocation.invoke_async(&mut conn.clone()).await
            }
        }
    }

    /// Circuits this connection needs: one for a server, one per slot group for a cluster.
    pub(super) fn circuit(&self) -> Circuit {
        let groups = match self {
            Self::Single(_) => 1,
            Self::Cluster { .. } => SLOT_GROUPS,
        };
        Circuit { open_until_ms: (0..groups).map(|_| AtomicI64::new(0)).collect() }
    }
}

/// After a failure, decisions that would go to the same place skip Redis for a while and
/// are made in process at full speed: a dead Redis (or a dead node) must not add its
/// timeout to every request. For a cluster, "the same place" is the slot group of the
/// decision's hash tag.
#[derive(Debug)]
pub(super) struct Circuit {
    open_until_ms: Box<[AtomicI64]>,
}

impl Circuit {
    fn group(&self, tag: &[u8]) -> usize {
        let groups = self.open_until_ms.len();
        if groups == 1 { 0 } else { usize::from(slot(tag)) * groups / usize::from(SLOTS) }
    }

    /// Whether decisions for `tag` skip Redis at `now_ms`.
    pub(super) fn is_open(&self, tag: &[u8], now_ms: i64) -> bool {
        self.open_until_ms[self.group(tag)].load(Ordering::Relaxed) > now_ms
    }

    /// Skips Redis for `tag`'s group until `until_ms`.
    pub(super) fn open(&self, tag: &[u8], until_ms: i64) {
        self.open_until_ms[self.group(tag)].store(until_ms, Ordering::Relaxed);
    }
}

/// The seed nodes of a `redis+cluster://` (or `rediss+cluster://`) URL, as single-node URLs
/// carrying the same credentials; `None` for any other URL.
fn cluster_nodes(url: &str) -> Option<Vec<String>> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = match scheme {
        "redis+cluster" => "redis",
        "rediss+cluster" => "rediss",
        _ => return None,
    };
    // `user:password@` may contain any percent-encoded byte but no raw `@` or `/`.
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let (credentials, hosts) = authority.rsplit_once('@').map_or(("", authority), |(c, h)| (c, h));
    let at = if credentials.is_empty() { "" } else { "@" };
    let query = path.find('?').map_or("", |i| &path[i..]);
    Some(
        hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|host| format!("{scheme}://{credentials}{at}{host}/{query}"))
            .collect(),
    )
}

/// Whether `url` asks for TLS without checking the server's certificate: redis-rs's
/// `#insecure` fragment, or `insecure` in the query (how a cluster's seed URL carries it).
fn skips_verification(url: &str) -> bool {
    let (rest, fragment) = url.split_once('#').unwrap_or((url, ""));
    let query = rest.split_once('?').map_or("", |(_, q)| q);
    fragment.eq_ignore_ascii_case("insecure")
        || query.split('&').any(|pair| pair.split('=').next().is_some_and(|k| k.eq_ignore_ascii_case("insecure")))
}

/// The cluster slot of a hash tag: CRC16 (XMODEM) modulo 16384, as Redis computes it for a
/// key whose `{…}` holds `tag`.
pub fn slot(tag: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in tag {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 == 0 { crc << 1 } else { (crc << 1) ^ 0x1021 };
        }
    }
    crc % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_is_redis_clusters() {
        // The reference value of the Redis Cluster specification: CRC16("123456789") = 0x31C3.
        assert_eq!(slot(b"123456789"), 0x31C3 % SLOTS);
        assert_eq!(slot(b""), 0);
    }

    #[test]
    fn a_cluster_url_names_its_seed_nodes_with_their_credentials() {
        assert_eq!(
            cluster_nodes("redis+cluster://:pw%40x@10.0.0.1:7000,10.0.0.2:7001"),
            Some(vec!["redis://:pw%40x@10.0.0.1:7000/".to_owned(), "redis://:pw%40x@10.0.0.2:7001/".to_owned()])
        );
        assert_eq!(
            cluster_nodes("rediss+cluster://cache.example:6380/?insecure"),
            Some(vec!["rediss://cache.example:6380/?insecure".to_owned()])
        );
        assert_eq!(cluster_nodes("redis://127.0.0.1:6379"), None);
        assert_eq!(cluster_nodes("rediss://127.0.0.1:6379"), None);
    }

    #[test]
    fn a_url_that_skips_the_certificate_check_is_refused_without_echoing_it() {
        for url in [
            "rediss://:hunter2@cache.example:6380/#insecure",
            "rediss://cache.example:6380/0#INSECURE",
            "rediss+cluster://:hunter2@a.example:7000,b.example:7001/?insecure",
            "rediss+cluster://a.example:7000/?protocol=resp3&insecure=true",
        ] {
            let refused = Connection::open(url, Duration::from_secs(1), None).err().expect(url).to_string();
            assert!(refused.contains("REDIS_CA_FILE") && !refused.contains("hunter2"), "{url}: {refused}");
        }
        for url in ["rediss://cache.example:6380/", "redis://127.0.0.1:6379/0", "rediss://h:1/?protocol=resp3"] {
            assert!(!skips_verification(url), "{url}");
        }
    }

    #[test]
    fn a_cluster_circuit_opens_for_one_slot_group_only() {
        let client = ClusterClient::new(vec!["redis://127.0.0.1:1"]).unwrap();
        let cluster =
            Connection::Cluster { client: Arc::new(client), config: ClusterConfig::new(), conn: Arc::default() };
        let circuit = cluster.circuit();
        // Two tags far apart in slot space.
        let (a, b) = (b"a".as_slice(), b"b".as_slice());
        assert_ne!(circuit.group(a), circuit.group(b), "slots {} and {}", slot(a), slot(b));
        circuit.open(a, 2_000);
        assert!(circuit.is_open(a, 1_000));
        assert!(!circuit.is_open(b, 1_000));
        assert!(!circuit.is_open(a, 2_000));
    }
}
