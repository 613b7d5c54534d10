//! The adapter of the domain's [`HostResolver`] port: host names in IP allowlists resolved
//! by the operating system's resolver (`getaddrinfo`, through tokio's blocking pool), with
//! a short cache so that a key with a host-name allowlist costs a lookup at most once per
//! TTL per name, not once per request.
//!
//! Architecture invariant: resolution never fails a verification with an error. A name
//! that does not resolve within the timeout, or at all, resolves to no address: the
//! allowlist then admits nothing through it (fail closed), and that answer is cached for
//! the shorter negative TTL so a broken name cannot turn every request into a slow lookup.

use std::{
    net::IpAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use keyward_domain::{Hostname, ports::HostResolver};
use moka::{Expiry, future::Cache};

/// Resolver settings; all configurable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolverConfig {
    /// How long an answer is used (SPEC: "a short cache").
    pub ttl: Duration,
    /// How long "does not resolve" is remembered.
    pub negative_ttl: Duration,
    /// How long one lookup may take before it counts as not resolving.
    pub timeout: Duration,
    /// Names kept.
    pub max_entries: u64,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            max_entries: 10_000,
        }
    }
}

type Addresses = Arc<[IpAddr]>;

struct TtlByAnswer {
    ttl: Duration,
    negative_ttl: Duration,
}

impl Expiry<Hostname, Addresses> for TtlByAnswer {
    fn expire_after_create(&self, _: &Hostname, value: &Addresses, _: Instant) -> Option<Duration> {
        Some(if value.is_empty() { self.negative_ttl } else { self.ttl })
    }
}

/// The system resolver behind a cache. Concurrent lookups of one name share one query.
pub struct SystemResolver {
    cache: Cache<Hostname, Addresses>,
    timeout: Duration,
    lookups: AtomicU64,
}

impl std::fmt::Debug for SystemResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemResolver").field("cached", &self.cache.entry_count()).finish()
    }
}

impl SystemResolver {
    pub fn new(config: ResolverConfig) -> Self {
        let cache = Cache::builder()
            .max_capacity(config.max_entries)
            .expire_after(TtlByAnswer { ttl: config.ttl, negative_ttl: config.negative_ttl })
            .build();
        Self { cache, timeout: config.timeout, lookups: AtomicU64::new(0) }
    }

    /// Lookups that reached the system resolver (cache misses), for tests and metrics.
    pub fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }

    async fn look_up(&self, host: &Hostname) -> Addresses {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        // The port is irrelevant; `lookup_host` wants one.
        let lookup = tokio::net::lookup_host((host.as_str(), 0));
        match tokio::time::timeout(self.timeout, lookup).await {
            Ok(Ok(addresses)) => {
                let mut ips: Vec<IpAddr> = addresses.map(|a| a.ip()).collect();
                ips.sort_unstable();
                ips.dedup();
                ips.into()
            }
            Ok(Err(error)) => {
                tracing::info!(host = %host, %error, "an allowlist host name does not resolve; it admits no address");
                Arc::from([])
            }
            Err(_) => {
                tracing::warn!(host = %host, timeout_ms = self.timeout.as_millis(), "resolving an allowlist host name timed out");
                Arc::from([])
            }
        }
    }
}

impl HostResolver for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a Hostname) -> Pin<Box<dyn Future<Output = Addresses> + Send + 'a>> {
        Box::pin(self.cache.get_with_by_ref(host, self.look_up(host)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

    use super::*;

    #[tokio::test]
    async fn localhost_resolves_to_loopback_once_per_ttl() {
        let resolver = SystemResolver::new(ResolverConfig::default());
        let localhost = Hostname::new("localhost").unwrap();
        let first = resolver.resolve(&localhost).await;
        assert!(first.iter().any(IpAddr::is_loopback), "{first:?}");
        assert!(first.iter().all(IpAddr::is_loopback), "{first:?}");
        let again = resolver.resolve(&localhost).await;
        assert_eq!(first, again);
        assert_eq!(resolver.lookups(), 1, "the second answer came from the cache");
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_admits_nothing_and_is_remembered() {
        // `.invalid` never resolves (RFC 2606); a short timeout bounds a resolver that hangs.
        let resolver =
            SystemResolver::new(ResolverConfig { timeout: Duration::from_secs(2), ..ResolverConfig::default() });
        let nowhere = Hostname::new("keyward-test.invalid").unwrap();
        assert!(resolver.resolve(&nowhere).await.is_empty());
        assert!(resolver.resolve(&nowhere).await.is_empty());
        assert_eq!(resolver.lookups(), 1, "the miss is cached");
    }

    #[tokio::test]
    async fn answers_expire_after_the_ttl() {
        let config = ResolverConfig { ttl: Duration::from_millis(50), ..ResolverConfig::default() };
        let resolver = SystemResolver::new(config);
        let localhost = Hostname::new("localhost").unwrap();
        resolver.resolve(&localhost).await;
        tokio::time::sleep(Duration::from_millis(120)).await;
        resolver.resolve(&localhost).await;
        assert_eq!(resolver.lookups(), 2, "a stale answer is looked up again");
    }
}
