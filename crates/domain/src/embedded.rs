//! The embedded verifier: what a Rust service holds to verify its customers' keys
//! in-process, with no network hop — the same checks, cache, rate limits, quotas and usage
//! metering as `POST /v1/keys/verify` on a Keyward server.
//!
//! A [`Verifier`] acts for one account (the SaaS's own): keys of other accounts, and
//! account or temporary keys, are `NOT_FOUND`, exactly as over HTTP. It never writes to
//! storage; what it meters goes into a [`UsageMeter`] that the adapter flushes in batches
//! (`keyward_store_pg::embedded` wires all of it against PostgreSQL).
//!
//! ```no_run
//! # async fn example<S: keyward_domain::Store, A: keyward_domain::ratelimit::Admission>(
//! #     verifier: &keyward_domain::embedded::Verifier<S, A>, presented: String,
//! # ) -> Result<(), keyward_domain::error::ManageError> {
//! use keyward_domain::{PlaintextKey, VerifyCode, key_service::VerifyInput, embedded::RequestUsage};
//!
//! let outcome = verifier
//!     .verify(
//!         &VerifyInput::key(PlaintextKey::new(presented)).with_scopes(["server:list"]),
//!         RequestUsage { endpoint: Some("/servers".into()), method: Some("GET".into()), ..Default::default() },
//!     )
//!     .await?;
//! if outcome.code == VerifyCode::Valid {
//!     // outcome.key holds the key's id, owner_id, scopes, metadata…
//! }
//! # Ok(()) }
//! ```

use std::{net::IpAddr, sync::Arc};

use crate::{
    error::ManageError,
    id::AccountId,
    key_service::{KeyService, VerifyInput, VerifyOutcome},
    meter::UsageMeter,
    ports::Store,
    ratelimit::Admission,
    secret::PlaintextKey,
    usage::UsageRecord,
};

/// Building a request, as an embedding service does.
impl VerifyInput {
    /// A request for `key` with nothing else asked of it (cost 1).
    pub fn key(key: PlaintextKey) -> Self {
        Self { key, scopes: Vec::new(), resource: None, ip: None, cost: 1 }
    }

    /// Scopes the key must grant.
    #[must_use]
    pub fn with_scopes<I: IntoIterator<Item = T>, T: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The address the customer called from (checked against the key's allowlist).
    #[must_use]
    pub fn with_ip(mut self, ip: Option<IpAddr>) -> Self {
        self.ip = ip;
        self
    }
}

/// What is metered of one request besides the verdict: the embedding service's route,
/// method, and — once it answered — its status and latency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestUsage {
    pub endpoint: Option<String>,
    pub method: Option<String>,
    pub status_code: Option<u16>,
    /// The embedding service's handling time, in microseconds.
    pub response_time_us: Option<u32>,
    pub ip: Option<IpAddr>,
}

/// Verifies service keys of one account in-process. Cheap to share (`Arc`); every method
/// takes `&self`.
#[derive(Debug)]
pub struct Verifier<S, A> {
    service: KeyService<S>,
    admission: Arc<A>,
    meter: Arc<UsageMeter>,
    account: AccountId,
}

impl<S: Store, A: Admission> Verifier<S, A> {
    /// A verifier of `account`'s keys over `service`'s store, limiting through `admission`
    /// and metering into `meter` (which someone must flush: see the module docs).
    pub fn new(service: KeyService<S>, admission: Arc<A>, meter: Arc<UsageMeter>, account: AccountId) -> Self {
        Self { service, admission, meter, account }
    }

    /// Checks a key and consumes its rate limit and quota, without metering: for a caller
    /// that meters later with the response's status ([`Verifier::record`]).
    /// Errors: `Invalid` (a malformed scope or resource in `input`), `Storage`.
    pub async fn check(&self, input: &VerifyInput) -> Result<VerifyOutcome, ManageError> {
        self.service.verify_in_account(self.account, input, &*self.admission).await
    }

    /// Checks a key ([`Verifier::check`]) and meters the verification.
    pub async fn verify(&self, input: &VerifyInput, usage: RequestUsage) -> Result<VerifyOutcome, ManageError> {
        let outcome = self.check(input).await?;
        self.record(&outcome, RequestUsage { ip: usage.ip.or(input.ip), ..usage });
        Ok(outcome)
    }

    /// Meters one verification (in memory; the flusher writes it). An unknown key counts
    /// in this account's statistics, with no key to list it under.
    pub fn record(&self, outcome: &VerifyOutcome, usage: RequestUsage) {
        self.meter.record(UsageRecord {
            key_id: outcome.key.as_ref().map(|key| key.id),
            account_id: outcome.key.as_ref().map_or(self.account, |key| key.account_id),
            ts: self.service.now(),
            endpoint: usage.endpoint,
            method: usage.method,
            status_code: usage.status_code,
            response_time_us: usage.response_time_us,
            ip: usage.ip,
            outcome: Some(outcome.code),
            quota_spent: outcome.quota_spent,
        });
    }

    /// The account whose keys this verifier finds.
    pub fn account(&self) -> AccountId {
        self.account
    }

    pub fn meter(&self) -> &Arc<UsageMeter> {
        &self.meter
    }

    pub fn service(&self) -> &KeyService<S> {
        &self.service
    }
}
