//! The use cases: authenticate a credential, manage keyspaces and keys, verify a key. They
//! are written against the ports only, so the same code runs over PostgreSQL, over memory,
//! and embedded in another service.

mod accounts;
mod gateway;
mod keys;
mod leaks;
pub mod mail;
mod notices;
mod reports;
mod verification;
mod webhooks;

use std::{borrow::Cow, net::IpAddr, sync::Arc};

use time::{Duration, OffsetDateTime};

use crate::{
    account::{Account, MAX_ACCOUNT_NAME_LEN},
    audit::{AuditFilter, AuditRecord, first_broken_link},
    clock::Clock,
    error::{AuthError, ManageError},
    id::{AccountId, EventId, KeyId, KeyspaceId, SessionId, UserId},
    key::{
        Actor, IpAllowlist, Key, KeyKind, KeyStatus, MAX_DESCRIPTION_LEN, MAX_IP_ALLOWLIST, MAX_METADATA_BYTES,
        MAX_NAME_LEN, MAX_OWNER_ID_LEN, MAX_RATE_LIMIT_WINDOWS, RateLimitWindow, ResourceBinding,
    },
    key_format::{self, Environment, KeyHash, KeyPrefix, ParseKeyError},
    keyspace::{DEFAULT_KEYSPACE_NAME, IpPolicy, Keyspace, LeakPolicy},
    people::Role,
    plan::{Plan, PlanLimits, PlanTable, Tier, TierTable},
    ports::{
        DeleteKeyspaceError, HostResolver, InsertKeyError, InsertKeyspaceError, KeyCounts, KeyFilter, KeyPage,
        NoResolver, PageRequest, StorageError, Store, UpdateKeyspaceError, VerifiableKey,
    },
    quota::Quota,
    random::RandomSource,
    ratelimit::{Admission, Decision, Limit, QuotaCharge, RateLimiter, Rule},
    scope::{ScopeSet, management},
    secret::PlaintextKey,
    usage::{AccountStats, UsageEntry, UsagePosition, UsageSummary},
    validation::FieldErrors,
    verdict::{self, VerifyCode, VerifyRequest},
    webhook::EventType,
};

pub use gateway::ForwardRequest;
pub use leaks::{LeakFinding, LeakReporter, MAX_LEAK_REPORT};
pub use webhooks::{
    DELIVERY_LEASE, MAX_RESPONSE_BYTES, NewWebhook, SEND_TIMEOUT, SendResult, WebhookPatch, WebhookRequest,
    WebhookSender,
};

pub type Metadata = serde_json::Map<String, serde_json::Value>;

pub const MAX_GRACE_PERIOD_SECONDS: u32 = 604_800;
pub const MAX_IMPORT_BATCH: usize = 1_000;
pub const MAX_VERIFY_COST: u32 = 1_000_000;
const MAX_PERIOD_SECONDS: u64 = 366 * 24 * 3600;
/// The most requests a key's own window may allow (a billion: past it, no limit is meant).
const MAX_WINDOW_LIMIT: u64 = 1_000_000_000;
const MAX_PRESENTED_KEY_LEN: usize = 512;

/// Settings the use cases read; every value has the SPEC default.
#[derive(Debug, Clone)]
pub struct DomainConfig {
    pub plans: PlanTable,
    pub tiers: TierTable,
    /// Prefix of every account's `default` keyspace.
    pub default_keyspace_prefix: KeyPrefix,
    /// Prefix of account keys (`kw_acct_live_…`).
    pub account_key_prefix: KeyPrefix,
    /// Prefix of temporary keys minted by login (`kw_tmp_live_…`).
    pub temporary_key_prefix: KeyPrefix,
    /// Peppers imported legacy hashes (from the server's secret); `None` keeps them as
    /// plain SHA-256. Every instance and embedding service must use the same one.
    pub legacy_pepper: Option<crate::key_format::LegacyPepper>,
    /// Budgets of failed lookups of legacy (non-native) strings.
    pub legacy_misses: crate::legacy::LegacyMissLimits,
    /// Whether webhook URLs may name private, loopback and link-local destinations
    /// (`[webhooks] allow_private`; off: refused, as SSRF).
    pub webhooks_allow_private: bool,
    /// When `key.expiring` and `quota.low` are sent (`[webhooks]`).
    pub webhook_notices: crate::webhook::notices::NoticeSettings,
}

impl Default for DomainConfig {
    fn default() -> Self {
        #[allow(clippy::expect_used)]
        Self {
            plans: PlanTable::default(),
            tiers: TierTable::default(),
            default_keyspace_prefix: KeyPrefix::new("kw").expect("valid literal"),
            account_key_prefix: KeyPrefix::new("kw_acct").expect("valid literal"),
            temporary_key_prefix: KeyPrefix::new("kw_tmp").expect("valid literal"),
            legacy_pepper: None,
            legacy_misses: crate::legacy::LegacyMissLimits::default(),
            webhooks_allow_private: false,
            webhook_notices: crate::webhook::notices::NoticeSettings::default(),
        }
    }
}

/// How a caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// An account or temporary key.
    Key { id: KeyId, kind: KeyKind },
    /// A person's login session (cookie).
    Session {
        id: SessionId,
        user_id: UserId,
        role: Role,
        step_up_until: Option<OffsetDateTime>,
        /// Logged in with a password someone else chose: only changing it (or logging
        /// out) is allowed.
        password_change_required: bool,
    },
}

/// Who is calling the management API, once authenticated.
#[derive(Debug, Clone)]
pub struct Principal {
    pub account_id: AccountId,
    pub via: Via,
    pub scopes: ScopeSet,
}

impl Principal {
    /// The principal of a key as stored, for tests that skip authentication.
    #[cfg(feature = "testing")]
    pub fn for_key(key: &Key) -> Self {
        Self { account_id: key.account_id, via: Via::Key { id: key.id, kind: key.kind }, scopes: key.scopes.clone() }
    }

    /// The principal of an authenticated key, from its verification view.
    pub fn for_verified(key: &VerifiableKey) -> Self {
        Self { account_id: key.account_id, via: Via::Key { id: key.id, kind: key.kind }, scopes: key.scopes.clone() }
    }

    pub fn require(&self, scope: &'static str) -> Result<(), ManageError> {
        if self.scopes.grants_str(scope) { Ok(()) } else { Err(ManageError::InsufficientScope(scope)) }
    }

    /// Whether this is a session that must change its password before anything else.
    pub fn password_change_required(&self) -> bool {
        matches!(self.via, Via::Session { password_change_required: true, .. })
    }

    /// Who appears in `created_by` and in audit events.
    pub fn actor(&self) -> Actor {
        match self.via {
            Via::Key { id, .. } => Actor::Key(id),
            Via::Session { user_id, .. } => Actor::User(user_id),
        }
    }
}

/// A key as created: the stored record and the plaintext, which is shown this once.
#[derive(Debug)]
pub struct IssuedKey {
    pub key: Key,
    pub plaintext: PlaintextKey,
}

/// Attributes of a new service key (`POST /v1/keys`), before validation.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub keyspace_id: Option<KeyspaceId>,
    pub name: String,
    pub description: Option<String>,
    pub environment: Option<Environment>,
    pub scopes: Option<Vec<String>>,
    pub resource: Option<String>,
    pub tier: Option<Tier>,
    pub rate_limits: Option<Vec<RateLimitWindow>>,
    pub quota: Option<Quota>,
    pub ip_allowlist: Option<Vec<String>>,
    pub expires_at: Option<OffsetDateTime>,
    pub idle_timeout_seconds: Option<u32>,
    pub owner_id: Option<String>,
    pub metadata: Option<Metadata>,
}

/// One entry of `POST /v1/keys/import`: a hash and the attributes of a new key.
#[derive(Debug, Clone)]
pub struct ImportedKey {
    pub hash: String,
    pub attributes: NewKey,
}

/// A change to a key (`PATCH /v1/keys/{id}`). `None` leaves an attribute alone;
/// `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default)]
pub struct KeyPatch {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub scopes: Option<Vec<String>>,
    pub resource: Option<Option<String>>,
    pub tier: Option<Tier>,
    pub rate_limits: Option<Vec<RateLimitWindow>>,
    pub quota: Option<Option<Quota>>,
    pub ip_allowlist: Option<Vec<String>>,
    pub expires_at: Option<Option<OffsetDateTime>>,
    pub idle_timeout_seconds: Option<Option<u32>>,
    pub owner_id: Option<Option<String>>,
    pub metadata: Option<Metadata>,
    pub is_active: Option<bool>,
}

#[derive(Debug, Clone, Default)]
pub struct NewKeyspace {
    pub name: String,
    pub prefix: Option<String>,
    pub default_tier: Option<Tier>,
    pub default_scopes: Option<Vec<String>>,
    pub allowed_scopes: Option<Vec<String>>,
    pub ip_policy: Option<IpPolicy>,
    pub leak_policy: Option<LeakPolicy>,
}

#[derive(Debug, Clone, Default)]
pub struct KeyspacePatch {
    pub name: Option<String>,
    pub prefix: Option<String>,
    pub default_tier: Option<Tier>,
    pub default_scopes: Option<Vec<String>>,
    pub allowed_scopes: Option<Option<Vec<String>>>,
    pub ip_policy: Option<IpPolicy>,
    /// `Some(None)`: back to the default by environment.
    pub leak_policy: Option<Option<LeakPolicy>>,
}

/// A verification request (`POST /v1/keys/verify`).
#[derive(Debug, Clone)]
pub struct VerifyInput {
    pub key: PlaintextKey,
    pub scopes: Vec<String>,
    pub resource: Option<String>,
    pub ip: Option<IpAddr>,
    pub cost: u32,
}

/// What verification found: the code and, when the key exists in the caller's account,
/// the key.
#[derive(Debug, Clone)]
pub struct VerifyOutcome {
    pub code: VerifyCode,
    /// The key that was found (the cache's shared record), whatever the verdict.
    pub key: Option<Arc<VerifiableKey>>,
    /// The key's rate limit after this request, when it got that far.
    pub ratelimit: Option<Decision>,
    /// The key's quota balance after this request, when it has a quota and got that far.
    pub quota_remaining: Option<i64>,
    /// The credits this request spent, for the usage record (the flush keeps the balance).
    pub quota_spent: Option<crate::quota::QuotaSpend>,
}

impl VerifyOutcome {
    /// No such key (in the caller's account).
    pub fn not_found() -> Self {
        Self::refused(VerifyCode::NotFound, None)
    }

    /// Refused with `code`, before any budget was looked at.
    pub(crate) fn refused(code: VerifyCode, key: Option<Arc<VerifiableKey>>) -> Self {
        Self { code, key, ratelimit: None, quota_remaining: None, quota_spent: None }
    }
}

/// What `keyward audit verify` found in one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub account: Option<AccountId>,
    pub events: u64,
    /// The first event whose link does not hold, if any.
    pub broken_at: Option<EventId>,
    /// The newest event's seq and hash: what `keyward audit head` prints for anchoring.
    pub head: Option<(i64, [u8; 32])>,
}

/// The account as `GET /v1/account` shows it.
#[derive(Debug, Clone)]
pub struct AccountOverview {
    pub account: Account,
    pub limits: PlanLimits,
    pub counts: KeyCounts,
}

/// What identifies a key in storage: its hash and how it is displayed.
#[derive(Debug)]
struct KeyMaterial {
    hash: KeyHash,
    display_prefix: String,
}

/// The use cases over one store.
#[derive(Debug, Clone)]
pub struct KeyService<S> {
    store: S,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn RandomSource>,
    config: Arc<DomainConfig>,
    resolver: Arc<dyn HostResolver>,
}

/// A name is one line of 1 to `max` characters, not all blank.
pub(crate) fn validate_name(errors: &mut FieldErrors, field: &str, name: &str, max: usize) {
    if name.trim().is_empty() || name.chars().count() > max {
        errors.push(field, format!("must be 1 to {max} characters and not blank"));
    } else if name.chars().any(char::is_control) {
        errors.push(field, "must not contain control characters");
    }
}

/// Free text: at most `max` characters, and no NUL, which PostgreSQL's text cannot hold
/// (it would fail the write, and the call, with a 500).
pub(crate) fn validate_optional_text(errors: &mut FieldErrors, field: &str, value: Option<&str>, max: usize) {
    if value.is_some_and(|v| v.chars().count() > max) {
        errors.push(field, format!("must be at most {max} characters"));
    } else if value.is_some_and(|v| v.contains('\0')) {
        errors.push(field, "must not contain the NUL character");
    }
}

pub(crate) fn parse_scopes(errors: &mut FieldErrors, field: &str, values: &[String]) -> Option<ScopeSet> {
    errors.check(field, ScopeSet::parse(values))
}

pub(crate) fn parse_allowlist(errors: &mut FieldErrors, values: &[String]) -> IpAllowlist {
    let mut allowlist = IpAllowlist::default();
    if values.len() > MAX_IP_ALLOWLIST {
        errors.push("ip_allowlist", format!("at most {MAX_IP_ALLOWLIST} entries"));
        return allowlist;
    }
    for (i, value) in values.iter().enumerate() {
        if let Err(error) = allowlist.push(value) {
            errors.push(format!("ip_allowlist[{i}]"), error.to_string());
        }
    }
    allowlist
}

fn validate_rate_limits(errors: &mut FieldErrors, windows: &[RateLimitWindow]) {
    if windows.len() > MAX_RATE_LIMIT_WINDOWS {
        errors.push("rate_limits", format!("at most {MAX_RATE_LIMIT_WINDOWS} windows"));
    }
    for (i, window) in windows.iter().enumerate() {
        if window.name.is_empty() || window.name.len() > 50 {
            errors.push(format!("rate_limits[{i}].name"), "must be 1 to 50 characters");
        } else if window.name.chars().any(char::is_control) {
            errors.push(format!("rate_limits[{i}].name"), "must not contain control characters");
        } else if windows[..i].iter().any(|w| w.name == window.name) {
            errors.push(format!("rate_limits[{i}].name"), "must be unique");
        }
        if !(1..=MAX_WINDOW_LIMIT).contains(&window.limit) {
            errors.push(format!("rate_limits[{i}].limit"), format!("must be 1 to {MAX_WINDOW_LIMIT}"));
        }
        if !(1..=MAX_PERIOD_SECONDS).contains(&window.period_seconds) {
            errors.push(format!("rate_limits[{i}].period_seconds"), format!("must be 1 to {MAX_PERIOD_SECONDS}"));
        }
    }
}

fn validate_quota(errors: &mut FieldErrors, quota: &Quota) {
    if quota.remaining < 0 {
        errors.push("quota.remaining", "must not be negative");
    }
    if quota.refill.is_some_and(|r| r.amount < 1) {
        errors.push("quota.refill.amount", "must be at least 1");
    }
}

fn validate_metadata(errors: &mut FieldErrors, metadata: &Metadata) {
    let serialized = serde_json::to_string(metadata).unwrap_or_default();
    if serialized.len() > MAX_METADATA_BYTES {
        errors.push("metadata", format!("must serialize to at most {MAX_METADATA_BYTES} bytes"));
    } else if serialized.contains("\\u0000") {
        // PostgreSQL's jsonb cannot hold U+0000 in a string.
        errors.push("metadata", "must not contain the NUL character (\\u0000)");
    }
}

fn check_catalogue(errors: &mut FieldErrors, field: &str, scopes: &ScopeSet, catalogue: Option<&ScopeSet>) {
    if let Some(catalogue) = catalogue {
        for scope in scopes.iter().filter(|s| !catalogue.grants(s)) {
            errors.push(field, format!("{scope} is not in the keyspace's allowed scopes"));
        }
    }
}

fn invalid_id<T>(field: &str) -> impl FnOnce(T) -> ManageError + use<'_, T> {
    move |_| ManageError::Invalid(FieldErrors::single(field, "no such object in this account"))
}

impl<S: Store> KeyService<S> {
    /// A service whose allowlists' host names admit nothing until [`KeyService::with_resolver`].
    pub fn new(store: S, clock: Arc<dyn Clock>, rng: Arc<dyn RandomSource>, config: Arc<DomainConfig>) -> Self {
        Self { store, clock, rng, config, resolver: Arc::new(NoResolver) }
    }

    /// Resolves the host names of IP allowlists through `resolver`.
    #[must_use]
    pub fn with_resolver(mut self, resolver: Arc<dyn HostResolver>) -> Self {
        self.resolver = resolver;
        self
    }

    /// The static checks, resolving the key's allowlist host names only when they could
    /// change the verdict: the key got as far as the IP check, and its addresses and
    /// networks did not admit `request.ip`.
    async fn check_key(&self, key: &VerifiableKey, request: VerifyRequest<'_>, now: OffsetDateTime) -> VerifyCode {
        let code = verdict::check(key, &request, now);
        if code != VerifyCode::IpNotAllowed || key.allowlist_hosts().is_empty() || request.ip.is_none() {
            return code;
        }
        let mut resolved = Vec::new();
        for host in key.allowlist_hosts() {
            resolved.extend_from_slice(&self.resolver.resolve(host).await);
        }
        verdict::check(key, &VerifyRequest { resolved: &resolved, ..request }, now)
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The current time at microsecond precision, the precision PostgreSQL keeps, so a
    /// key reads back exactly as it was returned when it was created.
    pub fn now(&self) -> OffsetDateTime {
        let now = self.clock.now();
        now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000).unwrap_or(now)
    }

    pub fn config(&self) -> &DomainConfig {
        &self.config
    }

    pub(crate) fn rng(&self) -> &dyn RandomSource {
        &*self.rng
    }

    /// Finds the key a presented string names. A string in the native format with a bad
    /// checksum is answered without touching storage; a string in no known format is looked
    /// up by its SHA-256, keyed with the legacy pepper when one is configured (imported
    /// legacy keys). Counts no failed lookup: callers facing untrusted strings use
    /// `verify_in_account` or `authenticate_counted`, which do.
    pub async fn lookup(&self, presented: &str) -> Result<Option<Arc<VerifiableKey>>, StorageError> {
        match self.lookup_hash(presented) {
            Some((hash, _)) => self.store.find_by_hash(&hash).await,
            None => Ok(None),
        }
    }

    /// The hash a presented string is looked up by, and whether it is a legacy (non-native)
    /// string; `None`: no lookup at all (a broken checksum, empty or oversized).
    fn lookup_hash(&self, presented: &str) -> Option<(KeyHash, bool)> {
        match key_format::parse(presented) {
            Ok(_) => Some((KeyHash::blake3(presented), false)),
            Err(ParseKeyError::BadChecksum) => None,
            Err(ParseKeyError::Malformed) if presented.is_empty() || presented.len() > MAX_PRESENTED_KEY_LEN => None,
            Err(ParseKeyError::Malformed) => {
                Some((KeyHash::legacy(presented, self.config.legacy_pepper.as_ref()), true))
            }
        }
    }

    /// [`KeyService::authenticate`] for a caller whose legacy strings count against the
    /// failed-lookup budgets of its address (`GET /v1/keys/self`, where nothing else is
    /// known of the caller).
    pub async fn authenticate_counted<L: RateLimiter>(
        &self,
        presented: &PlaintextKey,
        client_ip: Option<IpAddr>,
        limiter: &L,
    ) -> Result<Arc<VerifiableKey>, AuthError> {
        let found = self.lookup_counted(presented, client_ip, limiter).await?.ok_or(AuthError::Unauthorized)?;
        self.check_presented(found, client_ip).await
    }

    /// [`KeyService::lookup`], with legacy strings counted against the failed-lookup budgets
    /// of `client_ip`: over budget, nothing is looked up (`Unauthorized`); a miss counts.
    pub(crate) async fn lookup_counted<L: RateLimiter>(
        &self,
        presented: &PlaintextKey,
        client_ip: Option<IpAddr>,
        limiter: &L,
    ) -> Result<Option<Arc<VerifiableKey>>, AuthError> {
        let legacy = self.lookup_hash(presented.expose_secret()).is_some_and(|(_, legacy)| legacy);
        if !legacy {
            return Ok(self.lookup(presented.expose_secret()).await?);
        }
        let (limits, now) = (&self.config.legacy_misses, self.clock.now());
        if crate::legacy::admit(limiter, limits, None, client_ip, now).await.is_err() {
            return Err(AuthError::Unauthorized);
        }
        let found = self.lookup(presented.expose_secret()).await?;
        if found.is_none() {
            crate::legacy::count_miss(limiter, limits, None, client_ip, now).await;
        }
        Ok(found)
    }

    /// Authenticates a key presented to the API, of any kind (`authenticate_counted` adds
    /// the failed-lookup budgets for legacy strings).
    pub async fn authenticate(
        &self,
        presented: &PlaintextKey,
        client_ip: Option<IpAddr>,
    ) -> Result<Arc<VerifiableKey>, AuthError> {
        let found = self.lookup(presented.expose_secret()).await?.ok_or(AuthError::Unauthorized)?;
        self.check_presented(found, client_ip).await
    }

    /// The checks of a key presented as a credential: valid, or why not.
    async fn check_presented(
        &self,
        found: Arc<VerifiableKey>,
        client_ip: Option<IpAddr>,
    ) -> Result<Arc<VerifiableKey>, AuthError> {
        let request = VerifyRequest { ip: client_ip, ..Default::default() };
        match self.check_key(&found, request, self.clock.now()).await {
            VerifyCode::Valid => Ok(found),
            VerifyCode::Inactive => Err(AuthError::KeyInactive),
            VerifyCode::IpNotAllowed => Err(AuthError::IpNotAllowed),
            _ => Err(AuthError::Unauthorized),
        }
    }

    /// Authenticates a credential for the management API: account and temporary keys only.
    pub async fn authenticate_management(
        &self,
        presented: &PlaintextKey,
        client_ip: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        // Account and temporary keys are always native: anything else is refused without a
        // lookup, so the management API is no oracle for guessing imported legacy keys.
        if key_format::parse(presented.expose_secret()).is_err() {
            return Err(AuthError::Unauthorized);
        }
        let key = self.authenticate(presented, client_ip).await?;
        if key.kind == KeyKind::Service {
            return Err(AuthError::ServiceKey);
        }
        // Temporary keys expire after six idle hours: their use is recorded (a management
        // request, not verification, so a write is fine; at most one a minute per key).
        let now = self.now();
        if key.kind == KeyKind::Temporary && key.last_used_at.is_none_or(|at| at + Duration::minutes(1) <= now) {
            self.store.touch_key(key.id, now).await?;
        }
        Ok(Principal::for_verified(&key))
    }
}
