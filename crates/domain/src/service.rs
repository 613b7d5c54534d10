//! The use cases: authenticate a credential, manage keyspaces and keys, verify a key. They
//! are written against the ports only, so the same code runs over PostgreSQL, over memory,
//! and embedded in another service.

use std::{borrow::Cow, net::IpAddr, sync::Arc};

use time::{Duration, OffsetDateTime};

use crate::{
    account::{Account, MAX_ACCOUNT_NAME_LEN},
    audit::{AuditFilter, AuditRecord, first_broken_link},
    clock::Clock,
    error::{AuthError, ManageError},
    id::{AccountId, EventId, KeyId, KeyspaceId, SessionId, UserId},
    key::{
        Actor, Environment, IpAllowlist, Key, KeyKind, KeyStatus, MAX_DESCRIPTION_LEN, MAX_IP_ALLOWLIST,
        MAX_METADATA_BYTES, MAX_NAME_LEN, MAX_OWNER_ID_LEN, MAX_RATE_LIMIT_WINDOWS, Quota, RateLimitWindow,
        ResourceBinding,
    },
    key_format::{self, KeyHash, KeyPrefix, ParseKeyError},
    keyspace::{DEFAULT_KEYSPACE_NAME, IpPolicy, Keyspace},
    people::Role,
    plan::{Plan, PlanLimits, PlanTable, Tier, TierTable},
    ports::{
        DeleteKeyspaceError, HostResolver, InsertKeyError, InsertKeyspaceError, KeyCounts, KeyFilter, KeyPage,
        NoResolver, PageRequest, StorageError, Store, UpdateKeyspaceError, VerifiableKey,
    },
    random::RandomSource,
    ratelimit::{Decision, Limit, QuotaLedger, RateLimiter, Rule},
    scope::{ScopeSet, management},
    secret::PlaintextKey,
    usage::{AccountStats, UsageEntry, UsagePosition, UsageSummary},
    validation::FieldErrors,
    verify::{self, VerifyCode, VerifyRequest},
};

pub type Metadata = serde_json::Map<String, serde_json::Value>;

pub const MAX_GRACE_PERIOD_SECONDS: u32 = 604_800;
pub const MAX_IMPORT_BATCH: usize = 1_000;
pub const MAX_VERIFY_COST: u32 = 1_000_000;
const MAX_PERIOD_SECONDS: u64 = 366 * 24 * 3600;
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
}

#[derive(Debug, Clone, Default)]
pub struct KeyspacePatch {
    pub name: Option<String>,
    pub prefix: Option<String>,
    pub default_tier: Option<Tier>,
    pub default_scopes: Option<Vec<String>>,
    pub allowed_scopes: Option<Option<Vec<String>>>,
    pub ip_policy: Option<IpPolicy>,
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

pub(crate) fn validate_name(errors: &mut FieldErrors, field: &str, name: &str, max: usize) {
    if name.trim().is_empty() || name.chars().count() > max {
        errors.push(field, format!("must be 1 to {max} characters and not blank"));
    }
}

pub(crate) fn validate_optional_text(errors: &mut FieldErrors, field: &str, value: Option<&str>, max: usize) {
    if value.is_some_and(|v| v.chars().count() > max) {
        errors.push(field, format!("must be at most {max} characters"));
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
        } else if windows[..i].iter().any(|w| w.name == window.name) {
            errors.push(format!("rate_limits[{i}].name"), "must be unique");
        }
        if window.limit == 0 {
            errors.push(format!("rate_limits[{i}].limit"), "must be at least 1");
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
    let size = serde_json::to_vec(metadata).map_or(usize::MAX, |bytes| bytes.len());
    if size > MAX_METADATA_BYTES {
        errors.push("metadata", format!("must serialize to at most {MAX_METADATA_BYTES} bytes"));
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
        let code = verify::check(key, &request, now);
        if code != VerifyCode::IpNotAllowed || key.allowlist_hosts().is_empty() || request.ip.is_none() {
            return code;
        }
        let mut resolved = Vec::new();
        for host in key.allowlist_hosts() {
            resolved.extend_from_slice(&self.resolver.resolve(host).await);
        }
        verify::check(key, &VerifyRequest { resolved: &resolved, ..request }, now)
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
        let legacy = self.lookup_hash(presented.expose_secret()).is_some_and(|(_, legacy)| legacy);
        if !legacy {
            return self.authenticate(presented, client_ip).await;
        }
        let (limits, now) = (&self.config.legacy_misses, self.clock.now());
        if crate::legacy::admit(limiter, limits, None, client_ip, now).await.is_err() {
            return Err(AuthError::Unauthorized);
        }
        let found = self.authenticate(presented, client_ip).await;
        if matches!(found, Err(AuthError::Unauthorized)) {
            crate::legacy::count_miss(limiter, limits, None, client_ip, now).await;
        }
        found
    }

    /// Authenticates a key presented to the API, of any kind (`authenticate_counted` adds
    /// the failed-lookup budgets for legacy strings).
    pub async fn authenticate(
        &self,
        presented: &PlaintextKey,
        client_ip: Option<IpAddr>,
    ) -> Result<Arc<VerifiableKey>, AuthError> {
        let found = self.lookup(presented.expose_secret()).await?.ok_or(AuthError::Unauthorized)?;
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

    // --- verification -------------------------------------------------------------------

    /// Verifies a service key of the caller's account. Never writes to storage.
    pub async fn verify<A: RateLimiter + QuotaLedger>(
        &self,
        principal: &Principal,
        input: &VerifyInput,
        admission: &A,
    ) -> Result<VerifyOutcome, ManageError> {
        principal.require(management::KEYS_VERIFY)?;
        self.verify_in_account(principal.account_id, input, admission).await
    }

    /// Verifies a service key of `account`, for a caller already known to act for it (the
    /// embedded [`Verifier`](crate::verifier::Verifier)). Never writes to storage.
    /// Errors: `Invalid` (scopes, resource or cost), `Storage`.
    pub async fn verify_in_account<A: RateLimiter + QuotaLedger>(
        &self,
        account: AccountId,
        input: &VerifyInput,
        admission: &A,
    ) -> Result<VerifyOutcome, ManageError> {
        let mut errors = FieldErrors::new();
        let scopes = parse_scopes(&mut errors, "scopes", &input.scopes);
        let resource = input.resource.as_deref().and_then(|r| errors.check("resource", ResourceBinding::new(r)));
        if input.cost > MAX_VERIFY_COST {
            errors.push("cost", format!("must be 0 to {MAX_VERIFY_COST}"));
        }
        errors.into_result()?;

        let not_found = VerifyOutcome { code: VerifyCode::NotFound, key: None, ratelimit: None, quota_remaining: None };
        let Some((hash, legacy)) = self.lookup_hash(input.key.expose_secret()) else { return Ok(not_found) };
        if legacy {
            return self.verify_legacy(account, input, hash, admission, (scopes, resource)).await;
        }
        let Some(key) = self.store.find_by_hash(&hash).await? else {
            return Ok(not_found);
        };
        // Only the caller's own service keys exist, as far as the caller can tell.
        if key.account_id != account || key.kind != KeyKind::Service {
            return Ok(not_found);
        }
        self.decide(key, input, admission, (scopes, resource)).await
    }

    /// A legacy string: looked up only within the failed-lookup budgets of the calling
    /// account and of the client, and counted against them when it matches nothing.
    async fn verify_legacy<A: RateLimiter + QuotaLedger>(
        &self,
        account: AccountId,
        input: &VerifyInput,
        hash: KeyHash,
        admission: &A,
        wanted: (Option<ScopeSet>, Option<ResourceBinding>),
    ) -> Result<VerifyOutcome, ManageError> {
        let (limits, now) = (&self.config.legacy_misses, self.clock.now());
        crate::legacy::admit(admission, limits, Some(account), input.ip, now)
            .await
            .map_err(|retry_after_seconds| ManageError::LegacyGuessing { retry_after_seconds })?;
        let found = self.store.find_by_hash(&hash).await?;
        match found.filter(|key| key.account_id == account && key.kind == KeyKind::Service) {
            Some(key) => self.decide(key, input, admission, wanted).await,
            None => {
                crate::legacy::count_miss(admission, limits, Some(account), input.ip, now).await;
                Ok(VerifyOutcome { code: VerifyCode::NotFound, key: None, ratelimit: None, quota_remaining: None })
            }
        }
    }

    /// The checks of SPEC §4 after the lookup, then the budgets.
    async fn decide<A: RateLimiter + QuotaLedger>(
        &self,
        key: Arc<VerifiableKey>,
        input: &VerifyInput,
        admission: &A,
        (scopes, resource): (Option<ScopeSet>, Option<ResourceBinding>),
    ) -> Result<VerifyOutcome, ManageError> {
        let now = self.clock.now();
        let wanted = scopes.as_ref().map_or(&[][..], ScopeSet::as_slice);
        let request = VerifyRequest { scopes: wanted, resource: resource.as_ref(), ip: input.ip, resolved: &[] };
        let code = self.check_key(&key, request, now).await;
        if code != VerifyCode::Valid {
            return Ok(VerifyOutcome { code, key: Some(key), ratelimit: None, quota_remaining: None });
        }
        // Budgets are consumed only once every static check passed: first the rate limit
        // (one request), then the quota (`cost` credits), which a refused request never spends.
        let rules = self.rate_rules(key.tier, key.rate_limits());
        let decision = admission.check(key.id.as_uuid().as_bytes(), &rules, 1, now).await;
        if !decision.allowed {
            return Ok(VerifyOutcome {
                code: VerifyCode::RateLimited,
                key: Some(key),
                ratelimit: Some(decision),
                quota_remaining: None,
            });
        }
        let (code, quota_remaining) = match key.quota() {
            Some(quota) => {
                let spent = admission.spend(key.id, quota, u64::from(input.cost), now).await;
                (if spent.allowed { VerifyCode::Valid } else { VerifyCode::QuotaExhausted }, Some(spent.remaining))
            }
            None => (VerifyCode::Valid, None),
        };
        Ok(VerifyOutcome { code, key: Some(key), ratelimit: Some(decision), quota_remaining })
    }

    /// The rate limit of a service key: its own windows when it has any, else its tier's
    /// requests per minute.
    pub fn rate_rules(&self, tier: Tier, windows: &[RateLimitWindow]) -> Vec<Rule> {
        if windows.is_empty() {
            vec![Rule::new("tier", Limit::per_minute(self.config.tiers.per_minute(tier)))]
        } else {
            windows
                .iter()
                .map(|w| Rule {
                    name: Cow::Owned(w.name.clone()),
                    limit: Limit::Window { limit: w.limit, period_seconds: w.period_seconds },
                })
                .collect()
        }
    }

    // --- usage ----------------------------------------------------------------------------

    /// The per-request records of one of the caller's service keys, newest first.
    pub async fn key_usage(
        &self,
        principal: &Principal,
        id: KeyId,
        window: (Option<OffsetDateTime>, Option<OffsetDateTime>),
        before: Option<UsagePosition>,
        limit: u32,
    ) -> Result<Vec<UsageEntry>, ManageError> {
        principal.require(management::USAGE_READ)?;
        // Any key of the account: account keys are metered too (their management calls).
        let key = self.store.get_key(principal.account_id, id).await?.ok_or(ManageError::NotFound)?;
        Ok(self.store.key_usage(principal.account_id, key.id, window, before, limit).await?)
    }

    /// Requests today and this month of a key of the caller's account.
    pub async fn usage_summary(&self, principal: &Principal, id: KeyId) -> Result<UsageSummary, ManageError> {
        Ok(self.store.usage_summary(principal.account_id, id, self.now()).await?)
    }

    /// `GET /v1/stats`: key counts and verification statistics of the caller's account.
    pub async fn stats(&self, principal: &Principal) -> Result<(KeyCounts, AccountStats), ManageError> {
        principal.require(management::USAGE_READ)?;
        let now = self.now();
        let counts = self.store.count_keys(principal.account_id, now).await?;
        Ok((counts, self.store.account_stats(principal.account_id, now).await?))
    }

    // --- audit ----------------------------------------------------------------------------

    /// The caller's account's audit events, newest first (`GET /v1/audit`).
    pub async fn list_audit(
        &self,
        principal: &Principal,
        filter: &AuditFilter,
        limit: u32,
        before: Option<EventId>,
    ) -> Result<Vec<AuditRecord>, ManageError> {
        principal.require(management::AUDIT_READ)?;
        Ok(self.store.list_audit(principal.account_id, filter, limit, before).await?)
    }

    /// Walks every chain (or one account's) and reports the first broken link of each
    /// (`keyward audit verify`).
    pub async fn verify_audit(&self, only: Option<AccountId>) -> Result<Vec<ChainReport>, StorageError> {
        let chains = match only {
            Some(account) => vec![Some(account)],
            None => self.store.audit_chains().await?,
        };
        let mut reports = Vec::with_capacity(chains.len());
        for account in chains {
            let (mut after, mut prev, mut events, mut broken_at) = (0, None, 0u64, None);
            loop {
                let page = self.store.audit_chain(account, after, 1_000).await?;
                let Some(last) = page.last() else { break };
                events += page.len() as u64;
                if broken_at.is_none() {
                    broken_at = first_broken_link(&page, prev);
                }
                after = last.seq;
                prev = Some((last.seq, last.hash));
            }
            reports.push(ChainReport { account, events, broken_at, head: prev });
        }
        Ok(reports)
    }

    /// Whether the trail still holds the anchored event, unchanged, at its position.
    pub async fn holds_anchor(&self, anchor: &crate::audit::AnchoredHead) -> Result<bool, StorageError> {
        let found = self.store.audit_chain(anchor.account, anchor.seq - 1, 1).await?;
        Ok(found.first().is_some_and(|r| r.seq == anchor.seq && r.hash == anchor.hash))
    }

    /// The retention purge: each account's events older than its plan's retention go; events
    /// without an account are kept as long as the longest retention. Returns how many went.
    pub async fn purge_audit(&self) -> Result<u64, StorageError> {
        let now = self.now();
        let plans = &self.config.plans;
        let longest = [Plan::Free, Plan::Basic, Plan::Pro, Plan::Enterprise]
            .iter()
            .map(|p| plans.limits(*p).audit_retention_days)
            .max()
            .unwrap_or(730);
        let mut removed = 0;
        for account in self.store.audit_chains().await? {
            let days = match account {
                Some(id) => {
                    self.store.get_account(id).await?.map_or(longest, |a| plans.limits(a.plan).audit_retention_days)
                }
                None => longest,
            };
            removed += self.store.purge_audit(account, now - Duration::days(i64::from(days))).await?;
        }
        Ok(removed)
    }

    // --- account --------------------------------------------------------------------------

    pub async fn account_overview(&self, principal: &Principal) -> Result<AccountOverview, ManageError> {
        let account = self.store.get_account(principal.account_id).await?.ok_or(ManageError::NotFound)?;
        let limits = *self.config.plans.limits(account.plan);
        let counts = self.store.count_keys(account.id, self.now()).await?;
        Ok(AccountOverview { account, limits, counts })
    }

    /// Creates an account with its default keyspace and, when `with_account_key`, a first
    /// account key holding every management scope. This is the operator's path (CLI and the
    /// embedded bootstrap), so it is allowed whatever the plan says about account keys.
    pub async fn create_account(
        &self,
        name: &str,
        plan: Plan,
        with_account_key: bool,
    ) -> Result<(Account, Option<IssuedKey>), ManageError> {
        let mut errors = FieldErrors::new();
        validate_name(&mut errors, "name", name, MAX_ACCOUNT_NAME_LEN);
        errors.into_result()?;
        let now = self.now();
        let account =
            Account { id: AccountId::generate(now, &*self.rng), name: name.trim().to_owned(), plan, created_at: now };
        let keyspace = Keyspace {
            id: KeyspaceId::generate(now, &*self.rng),
            account_id: account.id,
            name: DEFAULT_KEYSPACE_NAME.to_owned(),
            prefix: self.config.default_keyspace_prefix.clone(),
            default_tier: self.config.plans.limits(plan).default_tier,
            default_scopes: ScopeSet::default(),
            allowed_scopes: None,
            ip_policy: IpPolicy::Open,
            created_at: now,
            updated_at: now,
        };
        let issued = with_account_key.then(|| {
            let plaintext = key_format::generate(&self.config.account_key_prefix, Environment::Live, &*self.rng);
            let key = self.blank_key(
                &account,
                None,
                KeyKind::Account,
                "bootstrap",
                Environment::Live,
                &plaintext,
                Actor::System,
                now,
            );
            IssuedKey { key: Key { scopes: ScopeSet::all_management(), ..key }, plaintext }
        });
        self.store.create_account(&account, &keyspace, issued.as_ref().map(|i| &i.key)).await?;
        Ok((account, issued))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn blank_key(
        &self,
        account: &Account,
        keyspace_id: Option<KeyspaceId>,
        kind: KeyKind,
        name: &str,
        environment: Environment,
        plaintext: &PlaintextKey,
        created_by: Actor,
        now: OffsetDateTime,
    ) -> Key {
        Key {
            id: KeyId::generate(now, &*self.rng),
            account_id: account.id,
            keyspace_id,
            kind,
            name: name.to_owned(),
            description: None,
            environment,
            key_prefix: key_format::display_prefix(plaintext),
            hash: KeyHash::blake3(plaintext.expose_secret()),
            scopes: ScopeSet::default(),
            resource: None,
            tier: self.config.plans.limits(account.plan).default_tier,
            rate_limits: Vec::new(),
            quota: None,
            ip_allowlist: IpAllowlist::default(),
            expires_at: None,
            idle_timeout_seconds: None,
            owner_id: None,
            metadata: Metadata::new(),
            is_active: true,
            revoked_at: None,
            rotated_from: None,
            rotated_to: None,
            last_used_at: None,
            usage_count: 0,
            created_at: now,
            created_by,
            updated_at: now,
        }
    }

    // --- keyspaces ------------------------------------------------------------------------

    pub async fn create_keyspace(&self, principal: &Principal, input: NewKeyspace) -> Result<Keyspace, ManageError> {
        principal.require(management::KEYSPACES_WRITE)?;
        let mut errors = FieldErrors::new();
        validate_name(&mut errors, "name", &input.name, MAX_NAME_LEN);
        let prefix = match input.prefix {
            Some(p) => errors.check("prefix", KeyPrefix::new(p)),
            None => Some(self.config.default_keyspace_prefix.clone()),
        };
        let default_scopes =
            parse_scopes(&mut errors, "default_scopes", input.default_scopes.as_deref().unwrap_or_default());
        let allowed_scopes = match &input.allowed_scopes {
            Some(values) => parse_scopes(&mut errors, "allowed_scopes", values).map(Some),
            None => Some(None),
        };
        if let (Some(defaults), Some(catalogue)) = (&default_scopes, &allowed_scopes) {
            check_catalogue(&mut errors, "default_scopes", defaults, catalogue.as_ref());
        }
        errors.into_result()?;
        let (Some(prefix), Some(default_scopes), Some(allowed_scopes)) = (prefix, default_scopes, allowed_scopes)
        else {
            unreachable!("every None above recorded an error");
        };
        let account = self.store.get_account(principal.account_id).await?.ok_or(ManageError::NotFound)?;
        let now = self.now();
        let keyspace = Keyspace {
            id: KeyspaceId::generate(now, &*self.rng),
            account_id: principal.account_id,
            name: input.name.trim().to_owned(),
            prefix,
            default_tier: input.default_tier.unwrap_or(self.config.plans.limits(account.plan).default_tier),
            default_scopes,
            allowed_scopes,
            ip_policy: input.ip_policy.unwrap_or_default(),
            created_at: now,
            updated_at: now,
        };
        self.store.insert_keyspace(&keyspace).await.map_err(|e| match e {
            InsertKeyspaceError::DuplicateName => {
                ManageError::Invalid(FieldErrors::single("name", "a keyspace of this name exists"))
            }
            InsertKeyspaceError::Storage(e) => ManageError::Storage(e),
        })?;
        Ok(keyspace)
    }

    pub async fn list_keyspaces(&self, principal: &Principal) -> Result<Vec<Keyspace>, ManageError> {
        principal.require(management::KEYSPACES_READ)?;
        Ok(self.store.list_keyspaces(principal.account_id).await?)
    }

    pub async fn get_keyspace(&self, principal: &Principal, id: KeyspaceId) -> Result<Keyspace, ManageError> {
        principal.require(management::KEYSPACES_READ)?;
        self.store.get_keyspace(principal.account_id, id).await?.ok_or(ManageError::NotFound)
    }

    pub async fn update_keyspace(
        &self,
        principal: &Principal,
        id: KeyspaceId,
        patch: KeyspacePatch,
    ) -> Result<Keyspace, ManageError> {
        principal.require(management::KEYSPACES_WRITE)?;
        let mut keyspace = self.store.get_keyspace(principal.account_id, id).await?.ok_or(ManageError::NotFound)?;
        let mut errors = FieldErrors::new();
        if let Some(name) = patch.name {
            validate_name(&mut errors, "name", &name, MAX_NAME_LEN);
            if keyspace.name == DEFAULT_KEYSPACE_NAME && name.trim() != DEFAULT_KEYSPACE_NAME {
                errors.push("name", "the default keyspace cannot be renamed");
            }
            keyspace.name = name.trim().to_owned();
        }
        if let Some(prefix) = patch.prefix.and_then(|p| errors.check("prefix", KeyPrefix::new(p))) {
            keyspace.prefix = prefix;
        }
        if let Some(tier) = patch.default_tier {
            keyspace.default_tier = tier;
        }
        if let Some(scopes) = patch.default_scopes.and_then(|s| parse_scopes(&mut errors, "default_scopes", &s)) {
            keyspace.default_scopes = scopes;
        }
        match patch.allowed_scopes {
            Some(Some(values)) => keyspace.allowed_scopes = parse_scopes(&mut errors, "allowed_scopes", &values),
            Some(None) => keyspace.allowed_scopes = None,
            None => {}
        }
        if let Some(policy) = patch.ip_policy {
            keyspace.ip_policy = policy;
        }
        check_catalogue(&mut errors, "default_scopes", &keyspace.default_scopes, keyspace.allowed_scopes.as_ref());
        errors.into_result()?;
        keyspace.updated_at = self.now();
        self.store.update_keyspace(&keyspace).await.map_err(|e| match e {
            UpdateKeyspaceError::NotFound => ManageError::NotFound,
            UpdateKeyspaceError::DuplicateName => {
                ManageError::Invalid(FieldErrors::single("name", "a keyspace of this name exists"))
            }
            UpdateKeyspaceError::Storage(e) => ManageError::Storage(e),
        })?;
        Ok(keyspace)
    }

    pub async fn delete_keyspace(&self, principal: &Principal, id: KeyspaceId) -> Result<(), ManageError> {
        principal.require(management::KEYSPACES_WRITE)?;
        let keyspace = self.store.get_keyspace(principal.account_id, id).await?.ok_or(ManageError::NotFound)?;
        if keyspace.name == DEFAULT_KEYSPACE_NAME {
            return Err(ManageError::Forbidden("the default keyspace cannot be deleted"));
        }
        self.store.delete_keyspace(principal.account_id, id, self.now()).await.map_err(|e| match e {
            DeleteKeyspaceError::NotFound => ManageError::NotFound,
            DeleteKeyspaceError::NotEmpty => ManageError::KeyspaceNotEmpty,
            DeleteKeyspaceError::Storage(e) => ManageError::Storage(e),
        })
    }

    // --- service keys ---------------------------------------------------------------------

    async fn resolve_keyspace(&self, account: AccountId, id: Option<KeyspaceId>) -> Result<Keyspace, ManageError> {
        match id {
            Some(id) => self.store.get_keyspace(account, id).await?.ok_or_else(|| invalid_id("keyspace_id")(())),
            None => {
                self.store.find_keyspace_by_name(account, DEFAULT_KEYSPACE_NAME).await?.ok_or(ManageError::NotFound)
            }
        }
    }

    /// Validates `input` into a key record in `keyspace`; `field` prefixes error fields
    /// (`keys[3]` for imports).
    fn build_key(
        &self,
        account: &Account,
        keyspace: &Keyspace,
        input: NewKey,
        material: KeyMaterial,
        created_by: Actor,
        now: OffsetDateTime,
    ) -> Result<Key, FieldErrors> {
        let mut errors = FieldErrors::new();
        validate_name(&mut errors, "name", &input.name, MAX_NAME_LEN);
        validate_optional_text(&mut errors, "description", input.description.as_deref(), MAX_DESCRIPTION_LEN);
        validate_optional_text(&mut errors, "owner_id", input.owner_id.as_deref(), MAX_OWNER_ID_LEN);
        let scopes = match &input.scopes {
            Some(values) => parse_scopes(&mut errors, "scopes", values),
            None => Some(keyspace.default_scopes.clone()),
        };
        if let Some(scopes) = &scopes {
            check_catalogue(&mut errors, "scopes", scopes, keyspace.allowed_scopes.as_ref());
        }
        let resource = input.resource.and_then(|r| errors.check("resource", ResourceBinding::new(r)));
        let rate_limits = input.rate_limits.unwrap_or_default();
        validate_rate_limits(&mut errors, &rate_limits);
        if let Some(quota) = &input.quota {
            validate_quota(&mut errors, quota);
        }
        let ip_allowlist = parse_allowlist(&mut errors, input.ip_allowlist.as_deref().unwrap_or_default());
        if input.expires_at.is_some_and(|at| at <= now) {
            errors.push("expires_at", "must be in the future");
        }
        if input.idle_timeout_seconds == Some(0) {
            errors.push("idle_timeout_seconds", "must be at least 1");
        }
        let metadata = input.metadata.unwrap_or_default();
        validate_metadata(&mut errors, &metadata);
        errors.into_result()?;
        Ok(Key {
            id: KeyId::generate(now, &*self.rng),
            account_id: account.id,
            keyspace_id: Some(keyspace.id),
            kind: KeyKind::Service,
            name: input.name.trim().to_owned(),
            description: input.description,
            environment: input.environment.unwrap_or_default(),
            key_prefix: material.display_prefix,
            hash: material.hash,
            scopes: scopes.unwrap_or_default(),
            resource,
            tier: input.tier.unwrap_or(keyspace.default_tier),
            rate_limits,
            quota: input.quota,
            ip_allowlist,
            expires_at: input.expires_at,
            idle_timeout_seconds: input.idle_timeout_seconds,
            owner_id: input.owner_id,
            metadata,
            is_active: true,
            revoked_at: None,
            rotated_from: None,
            rotated_to: None,
            last_used_at: None,
            usage_count: 0,
            created_at: now,
            created_by,
            updated_at: now,
        })
    }

    async fn account(&self, principal: &Principal) -> Result<Account, ManageError> {
        self.store.get_account(principal.account_id).await?.ok_or(ManageError::NotFound)
    }

    fn map_insert(error: InsertKeyError) -> ManageError {
        match error {
            InsertKeyError::KeyLimitReached => ManageError::KeyLimitReached,
            InsertKeyError::DuplicateHash { index } => {
                FieldErrors::single(format!("keys[{index}].hash"), "a key with this hash exists already").into()
            }
            InsertKeyError::Storage(e) => ManageError::Storage(e),
        }
    }

    pub async fn create_key(&self, principal: &Principal, input: NewKey) -> Result<IssuedKey, ManageError> {
        principal.require(management::KEYS_WRITE)?;
        let account = self.account(principal).await?;
        let keyspace = self.resolve_keyspace(account.id, input.keyspace_id).await?;
        let now = self.now();
        let environment = input.environment.unwrap_or_default();
        let plaintext = key_format::generate(&keyspace.prefix, environment, &*self.rng);
        let material = KeyMaterial {
            hash: KeyHash::blake3(plaintext.expose_secret()),
            display_prefix: key_format::display_prefix(&plaintext),
        };
        let key = self.build_key(&account, &keyspace, input, material, principal.actor(), now)?;
        let max_keys = self.config.plans.limits(account.plan).max_keys;
        self.store.insert_keys(std::slice::from_ref(&key), max_keys).await.map_err(Self::map_insert)?;
        Ok(IssuedKey { key, plaintext })
    }

    pub async fn import_keys(
        &self,
        principal: &Principal,
        keyspace_id: Option<KeyspaceId>,
        entries: Vec<ImportedKey>,
    ) -> Result<Vec<Key>, ManageError> {
        principal.require(management::KEYS_WRITE)?;
        if entries.is_empty() || entries.len() > MAX_IMPORT_BATCH {
            return Err(FieldErrors::single("keys", format!("must hold 1 to {MAX_IMPORT_BATCH} keys")).into());
        }
        let account = self.account(principal).await?;
        let keyspace = self.resolve_keyspace(account.id, keyspace_id).await?;
        let now = self.now();
        let mut errors = FieldErrors::new();
        let mut keys = Vec::with_capacity(entries.len());
        for (i, entry) in entries.into_iter().enumerate() {
            let Ok(hash) = KeyHash::parse_tagged(&entry.hash)
                .map(|h| self.config.legacy_pepper.as_ref().map_or(h, |pepper| h.peppered(pepper)))
            else {
                errors.push(
                    format!("keys[{i}].hash"),
                    "must be \"sha256:<64 hex digits>\" or \"blake3:<64 hex digits>\"",
                );
                continue;
            };
            if keys.iter().any(|k: &Key| k.hash == hash) {
                errors.push(format!("keys[{i}].hash"), "appears twice in this import");
                continue;
            }
            let display = format!("{}:…", hash.algorithm().name());
            let material = KeyMaterial { hash, display_prefix: display };
            match self.build_key(&account, &keyspace, entry.attributes, material, principal.actor(), now) {
                Ok(key) => keys.push(key),
                Err(e) => errors.extend_prefixed(&format!("keys[{i}]"), e),
            }
        }
        errors.into_result()?;
        let max_keys = self.config.plans.limits(account.plan).max_keys;
        self.store.insert_keys(&keys, max_keys).await.map_err(Self::map_insert)?;
        Ok(keys)
    }

    pub async fn list_keys(
        &self,
        principal: &Principal,
        filter: &KeyFilter,
        page: PageRequest,
    ) -> Result<KeyPage, ManageError> {
        principal.require(management::KEYS_READ)?;
        Ok(self.store.list_keys(principal.account_id, filter, page, self.now()).await?)
    }

    pub async fn get_key(&self, principal: &Principal, id: KeyId) -> Result<Key, ManageError> {
        principal.require(management::KEYS_READ)?;
        self.service_key(principal, id).await
    }

    async fn service_key(&self, principal: &Principal, id: KeyId) -> Result<Key, ManageError> {
        match self.store.get_key(principal.account_id, id).await? {
            Some(key) if key.kind == KeyKind::Service => Ok(key),
            _ => Err(ManageError::NotFound),
        }
    }

    pub async fn update_key(&self, principal: &Principal, id: KeyId, patch: KeyPatch) -> Result<Key, ManageError> {
        principal.require(management::KEYS_WRITE)?;
        let before = self.service_key(principal, id).await?;
        let mut key = before.clone();
        let keyspace = match key.keyspace_id {
            Some(ks) => self.store.get_keyspace(principal.account_id, ks).await?,
            None => None,
        };
        let now = self.now();
        let mut errors = FieldErrors::new();
        if let Some(name) = patch.name {
            validate_name(&mut errors, "name", &name, MAX_NAME_LEN);
            key.name = name.trim().to_owned();
        }
        if let Some(description) = patch.description {
            validate_optional_text(&mut errors, "description", description.as_deref(), MAX_DESCRIPTION_LEN);
            key.description = description;
        }
        if let Some(scopes) = patch.scopes.and_then(|s| parse_scopes(&mut errors, "scopes", &s)) {
            check_catalogue(&mut errors, "scopes", &scopes, keyspace.as_ref().and_then(|k| k.allowed_scopes.as_ref()));
            key.scopes = scopes;
        }
        match patch.resource {
            Some(Some(r)) => key.resource = errors.check("resource", ResourceBinding::new(r)),
            Some(None) => key.resource = None,
            None => {}
        }
        if let Some(tier) = patch.tier {
            key.tier = tier;
        }
        if let Some(windows) = patch.rate_limits {
            validate_rate_limits(&mut errors, &windows);
            key.rate_limits = windows;
        }
        if let Some(quota) = patch.quota {
            if let Some(q) = &quota {
                validate_quota(&mut errors, q);
            }
            key.quota = quota;
        }
        if let Some(list) = patch.ip_allowlist {
            key.ip_allowlist = parse_allowlist(&mut errors, &list);
        }
        if let Some(expires_at) = patch.expires_at {
            if expires_at.is_some_and(|at| at <= now) {
                errors.push("expires_at", "must be in the future");
            }
            key.expires_at = expires_at;
        }
        if let Some(idle) = patch.idle_timeout_seconds {
            if idle == Some(0) {
                errors.push("idle_timeout_seconds", "must be at least 1");
            }
            key.idle_timeout_seconds = idle;
        }
        if let Some(owner) = patch.owner_id {
            validate_optional_text(&mut errors, "owner_id", owner.as_deref(), MAX_OWNER_ID_LEN);
            key.owner_id = owner;
        }
        if let Some(metadata) = patch.metadata {
            validate_metadata(&mut errors, &metadata);
            key.metadata = metadata;
        }
        if let Some(active) = patch.is_active {
            key.is_active = active;
        }
        errors.into_result()?;
        key.updated_at = now;
        self.store.update_key(&before, &key).await?;
        // Read back: a concurrent revocation wins over this update, and the answer says so.
        self.service_key(principal, id).await
    }

    /// Revokes a key for good. Revoking a revoked key is not an error and keeps the first
    /// `revoked_at`.
    pub async fn revoke_key(&self, principal: &Principal, id: KeyId) -> Result<Key, ManageError> {
        principal.require(management::KEYS_WRITE)?;
        self.revoke(self.service_key(principal, id).await?).await?;
        self.service_key(principal, id).await
    }

    /// Revokes `key` now unless it already is (any kind of key; the callers check access).
    pub(crate) async fn revoke(&self, key: Key) -> Result<(), ManageError> {
        if key.revoked_at.is_none() {
            let now = self.now();
            let revoked = Key { revoked_at: Some(now), updated_at: now, ..key.clone() };
            self.store.update_key(&key, &revoked).await?;
        }
        Ok(())
    }

    /// Issues a successor with the same attributes and a new secret; the old key keeps
    /// working for `grace_period_seconds`, then expires.
    pub async fn rotate_key(
        &self,
        principal: &Principal,
        id: KeyId,
        grace_period_seconds: u32,
    ) -> Result<IssuedKey, ManageError> {
        principal.require(management::KEYS_WRITE)?;
        if grace_period_seconds > MAX_GRACE_PERIOD_SECONDS {
            return Err(FieldErrors::single(
                "grace_period_seconds",
                format!("must be 0 to {MAX_GRACE_PERIOD_SECONDS}"),
            )
            .into());
        }
        let mut old = self.service_key(principal, id).await?;
        if old.revoked_at.is_some() {
            return Err(ManageError::Forbidden("a revoked key cannot be rotated"));
        }
        let keyspace = match old.keyspace_id {
            Some(ks) => self.store.get_keyspace(principal.account_id, ks).await?,
            None => None,
        };
        let now = self.now();
        // The successor is one more active key unless the old one stops counting at once.
        let frees_one = grace_period_seconds == 0 && old.status(now) == KeyStatus::Active;
        if !frees_one {
            let account = self.store.get_account(principal.account_id).await?.ok_or(ManageError::NotFound)?;
            if let Some(max) = self.config.plans.limits(account.plan).max_keys
                && self.store.count_keys(account.id, now).await?.active >= max
            {
                return Err(ManageError::KeyLimitReached);
            }
        }
        let prefix = keyspace.map_or_else(|| self.config.default_keyspace_prefix.clone(), |k| k.prefix);
        let plaintext = key_format::generate(&prefix, old.environment, &*self.rng);
        let new = Key {
            id: KeyId::generate(now, &*self.rng),
            key_prefix: key_format::display_prefix(&plaintext),
            hash: KeyHash::blake3(plaintext.expose_secret()),
            rotated_from: Some(old.id),
            rotated_to: None,
            revoked_at: None,
            last_used_at: None,
            usage_count: 0,
            created_at: now,
            created_by: principal.actor(),
            updated_at: now,
            ..old.clone()
        };
        let grace_end = now + Duration::seconds(i64::from(grace_period_seconds));
        old.expires_at = Some(old.expires_at.map_or(grace_end, |at| at.min(grace_end)));
        old.rotated_to = Some(new.id);
        old.updated_at = now;
        self.store.rotate_key(&old, &new).await?;
        Ok(IssuedKey { key: new, plaintext })
    }
}
