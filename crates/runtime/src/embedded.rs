//! Embedding: a Rust service verifies its customers' keys in-process against the same
//! storage a Keyward server uses, with the same batched usage metering.
//!
//! This module composes the parts — a store, a host resolver, the limits, the usage
//! flusher — through the domain's ports, so it works over any store. The PostgreSQL
//! adapter prepares its store for it (`keyward_store_pg::embedded::connect`: migrations
//! checked, the verification cache and its `LISTEN/NOTIFY` invalidation running):
//!
//! ```ignore
//! use std::sync::Arc;
//! use keyward_runtime::embedded::{EmbeddedOptions, EmbeddedVerifier};
//!
//! let store = keyward_store_pg::embedded::connect(database_url, &Default::default()).await?;
//! let resolver = Arc::new(keyward_resolver::SystemResolver::new(Default::default()));
//! // Any `Admission`: `keyward_ratelimit::Limits` (in process or Redis).
//! let limits = Arc::new(keyward_ratelimit::Limits::in_process());
//! let verifier = EmbeddedVerifier::start(store, account, limits, resolver, EmbeddedOptions::default());
//! // … verifier.verify(…) on every request, or guard routes with `keyward_http::guard` …
//! verifier.shutdown().await; // writes the usage still in memory
//! ```
//!
//! Needs a tokio runtime (the usage flusher is a tokio task).

use std::{sync::Arc, time::Duration};

use keyward_domain::{
    AccountId, OsRandom, Store, SystemClock,
    embedded::Verifier,
    key_service::{DomainConfig, KeyService},
    meter::UsageMeter,
    ports::HostResolver,
    ratelimit::Admission,
};

use crate::usage::{Flusher, spawn_flusher};

/// How the embedded verifier judges and meters; the defaults are `keyward serve`'s.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Tiers and plans: must match the Keyward servers' configuration, or the same key
    /// would be limited differently here and there.
    pub domain: DomainConfig,
    /// Usage records kept in memory before they are dropped (and counted).
    pub usage_buffer: usize,
    /// How often usage is written.
    pub flush_every: Duration,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self { domain: DomainConfig::default(), usage_buffer: 100_000, flush_every: Duration::from_secs(1) }
    }
}

/// A [`Verifier`] with its usage flusher running (dropping it ends the flusher after one
/// last flush; [`EmbeddedVerifier::shutdown`] waits for that flush).
/// Dereferences to the [`Verifier`]; share it behind an `Arc`.
#[derive(Debug)]
pub struct EmbeddedVerifier<S, A> {
    verifier: Arc<Verifier<S, A>>,
    flusher: Flusher,
}

impl<S: Store, A: Admission> EmbeddedVerifier<S, A> {
    /// Starts the usage flusher over `store`. The verifier finds the service keys of
    /// `account` only; host names in IP allowlists resolve through `resolver`.
    pub fn start(
        store: S,
        account: AccountId,
        admission: Arc<A>,
        resolver: Arc<dyn HostResolver>,
        options: EmbeddedOptions,
    ) -> Self {
        let service =
            KeyService::new(store.clone(), Arc::new(SystemClock), Arc::new(OsRandom), Arc::new(options.domain))
                .with_resolver(resolver);
        let meter = Arc::new(UsageMeter::new(options.usage_buffer));
        let flusher = spawn_flusher(meter.clone(), store, options.flush_every);
        Self { verifier: Arc::new(Verifier::new(service, admission, meter, account)), flusher }
    }

    /// The verifier, to hand to `keyward_http::guard::KeyGuard` or keep elsewhere.
    pub fn verifier(&self) -> &Arc<Verifier<S, A>> {
        &self.verifier
    }

    /// Writes what is buffered now, after a flush in progress; returns how many records
    /// this call wrote.
    pub async fn flush(&self) -> usize {
        self.flusher.flush_now(self.verifier.meter(), self.verifier.service().store()).await
    }

    /// Stops the flusher (after a flush in progress) and writes what is left: call it once
    /// requests have stopped. Returns how many records this last flush wrote.
    pub async fn shutdown(self) -> usize {
        self.flusher.stop().await
    }
}

impl<S, A> std::ops::Deref for EmbeddedVerifier<S, A> {
    type Target = Verifier<S, A>;

    fn deref(&self) -> &Self::Target {
        &self.verifier
    }
}
