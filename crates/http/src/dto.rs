//! The JSON shapes of the API. Requests reject unknown fields; responses are built from
//! domain values here and nowhere else, so the wire format is one file to read.

use keyward_domain::{
    Environment, IpPolicy, Key, KeyId, KeyStatus, Keyspace, KeyspaceId, Tier,
    key::{Refill, RefillInterval},
    service::{AccountOverview, KeyPatch, KeyspacePatch, Metadata, NewKey, NewKeyspace},
};
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`), so that
/// `PATCH {"expires_at": null}` clears the value.
fn double_option<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A secret string from a request body (a password, a presented key): deserialised like a
/// string, redacted in `Debug`. Also what a response that shows a secret once (a new key,
/// an initial password) carries, so that no `Debug` of a DTO prints it.
#[derive(Clone, Deserialize, Serialize)]
#[serde(transparent)]
pub struct SecretString(pub String);

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A named rate-limit window.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitWindowDto {
    /// e.g. `per_minute`
    pub name: String,
    pub limit: u64,
    pub period_seconds: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefillDto {
    pub amount: i64,
    /// `day` or `month`; the balance is replaced at 00:00 UTC.
    #[schema(value_type = String, example = "month")]
    pub interval: RefillInterval,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaDto {
    pub remaining: i64,
    #[serde(default)]
    pub refill: Option<RefillDto>,
}

impl From<RateLimitWindowDto> for keyward_domain::RateLimitWindow {
    fn from(w: RateLimitWindowDto) -> Self {
        Self { name: w.name, limit: w.limit, period_seconds: w.period_seconds }
    }
}

impl From<&keyward_domain::RateLimitWindow> for RateLimitWindowDto {
    fn from(w: &keyward_domain::RateLimitWindow) -> Self {
        Self { name: w.name.clone(), limit: w.limit, period_seconds: w.period_seconds }
    }
}

impl From<QuotaDto> for keyward_domain::Quota {
    fn from(q: QuotaDto) -> Self {
        Self { remaining: q.remaining, refill: q.refill.map(|r| Refill { amount: r.amount, interval: r.interval }) }
    }
}

impl From<&keyward_domain::Quota> for QuotaDto {
    fn from(q: &keyward_domain::Quota) -> Self {
        Self { remaining: q.remaining, refill: q.refill.map(|r| RefillDto { amount: r.amount, interval: r.interval }) }
    }
}

/// `POST /v1/keys`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    #[schema(value_type = Option<String>, example = "ks_0F9u2Xf1l8tQkz5Hc0Yw3e")]
    pub keyspace_id: Option<KeyspaceId>,
    #[schema(example = "server srv_42")]
    pub name: String,
    pub description: Option<String>,
    #[schema(value_type = Option<String>, example = "live")]
    pub environment: Option<Environment>,
    #[schema(example = json!(["server:*", "ip:setptr"]))]
    pub scopes: Option<Vec<String>>,
    #[schema(example = "server:srv_42")]
    pub resource: Option<String>,
    #[schema(value_type = Option<String>, example = "pro")]
    pub tier: Option<Tier>,
    pub rate_limits: Option<Vec<RateLimitWindowDto>>,
    pub quota: Option<QuotaDto>,
    #[schema(example = json!(["203.0.113.0/24", "2001:db8::1"]))]
    pub ip_allowlist: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    pub idle_timeout_seconds: Option<u32>,
    pub owner_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Metadata>,
}

impl From<CreateKeyRequest> for NewKey {
    fn from(r: CreateKeyRequest) -> Self {
        NewKey {
            keyspace_id: r.keyspace_id,
            name: r.name,
            description: r.description,
            environment: r.environment,
            scopes: r.scopes,
            resource: r.resource,
            tier: r.tier,
            rate_limits: r.rate_limits.map(|w| w.into_iter().map(Into::into).collect()),
            quota: r.quota.map(Into::into),
            ip_allowlist: r.ip_allowlist,
            expires_at: r.expires_at,
            idle_timeout_seconds: r.idle_timeout_seconds,
            owner_id: r.owner_id,
            metadata: r.metadata,
        }
    }
}

/// One key of `POST /v1/keys/import`: its hash and the attributes of `POST /v1/keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportKeyEntry {
    /// `sha256:<64 hex>` or `blake3:<64 hex>` of the key as customers present it.
    #[schema(example = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")]
    pub hash: String,
    pub name: String,
    pub description: Option<String>,
    #[schema(value_type = Option<String>)]
    pub environment: Option<Environment>,
    pub scopes: Option<Vec<String>>,
    pub resource: Option<String>,
    #[schema(value_type = Option<String>)]
    pub tier: Option<Tier>,
    pub rate_limits: Option<Vec<RateLimitWindowDto>>,
    pub quota: Option<QuotaDto>,
    pub ip_allowlist: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    pub idle_timeout_seconds: Option<u32>,
    pub owner_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Metadata>,
}

impl ImportKeyEntry {
    pub fn into_domain(self) -> keyward_domain::service::ImportedKey {
        let ImportKeyEntry {
            hash,
            name,
            description,
            environment,
            scopes,
            resource,
            tier,
            rate_limits,
            quota,
            ip_allowlist,
            expires_at,
            idle_timeout_seconds,
            owner_id,
            metadata,
        } = self;
        let attributes = CreateKeyRequest {
            keyspace_id: None,
            name,
            description,
            environment,
            scopes,
            resource,
            tier,
            rate_limits,
            quota,
            ip_allowlist,
            expires_at,
            idle_timeout_seconds,
            owner_id,
            metadata,
        };
        keyward_domain::service::ImportedKey { hash, attributes: attributes.into() }
    }
}

/// `POST /v1/keys/import`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportKeysRequest {
    #[schema(value_type = Option<String>)]
    pub keyspace_id: Option<KeyspaceId>,
    pub keys: Vec<ImportKeyEntry>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportedKeyRef {
    #[schema(value_type = String)]
    pub id: KeyId,
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportKeysResponse {
    pub imported: usize,
    pub keys: Vec<ImportedKeyRef>,
}

/// `PATCH /v1/keys/{id}`: only the fields present change; `null` clears a nullable one.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKeyRequest {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    pub description: Option<Option<String>>,
    pub scopes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub resource: Option<Option<String>>,
    #[schema(value_type = Option<String>)]
    pub tier: Option<Tier>,
    pub rate_limits: Option<Vec<RateLimitWindowDto>>,
    #[serde(default, deserialize_with = "double_option")]
    pub quota: Option<Option<QuotaDto>>,
    pub ip_allowlist: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::timestamp::double_option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Option<OffsetDateTime>>,
    #[serde(default, deserialize_with = "double_option")]
    pub idle_timeout_seconds: Option<Option<u32>>,
    #[serde(default, deserialize_with = "double_option")]
    pub owner_id: Option<Option<String>>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Metadata>,
    pub is_active: Option<bool>,
}

impl From<UpdateKeyRequest> for KeyPatch {
    fn from(r: UpdateKeyRequest) -> Self {
        KeyPatch {
            name: r.name,
            description: r.description,
            scopes: r.scopes,
            resource: r.resource,
            tier: r.tier,
            rate_limits: r.rate_limits.map(|w| w.into_iter().map(Into::into).collect()),
            quota: r.quota.map(|q| q.map(Into::into)),
            ip_allowlist: r.ip_allowlist,
            expires_at: r.expires_at,
            idle_timeout_seconds: r.idle_timeout_seconds,
            owner_id: r.owner_id,
            metadata: r.metadata,
            is_active: r.is_active,
        }
    }
}

/// `POST /v1/keys/{id}/rotate`; the body may be empty.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKeyRequest {
    /// How long the old key keeps working (0–604800 s, default 0).
    #[serde(default)]
    pub grace_period_seconds: u32,
}

/// `GET /v1/keys` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListKeysQuery {
    #[param(value_type = Option<String>)]
    pub keyspace_id: Option<KeyspaceId>,
    #[param(value_type = Option<String>)]
    pub environment: Option<Environment>,
    #[param(value_type = Option<String>)]
    pub status: Option<KeyStatus>,
    pub owner_id: Option<String>,
    /// 1–100, default 50.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A key as the API shows it. The plaintext appears only in [`IssuedKeyResponse`].
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyResponse {
    #[schema(value_type = String)]
    pub id: KeyId,
    #[schema(value_type = String)]
    pub kind: keyward_domain::KeyKind,
    #[schema(value_type = Option<String>)]
    pub keyspace_id: Option<KeyspaceId>,
    pub name: String,
    pub description: Option<String>,
    #[schema(value_type = String)]
    pub environment: Environment,
    /// Display form: enough to recognise the key, too little to use it.
    #[schema(example = "gmk_cru_live_Ab3d…9xQz")]
    pub key_prefix: String,
    #[schema(value_type = String, example = "active")]
    pub status: KeyStatus,
    pub scopes: Vec<String>,
    pub resource: Option<String>,
    #[schema(value_type = String)]
    pub tier: Tier,
    pub rate_limits: Vec<RateLimitWindowDto>,
    pub quota: Option<QuotaDto>,
    pub ip_allowlist: Vec<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    pub idle_timeout_seconds: Option<u32>,
    pub owner_id: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Metadata,
    pub is_active: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
    #[schema(value_type = Option<String>)]
    pub rotated_from: Option<KeyId>,
    #[schema(value_type = Option<String>)]
    pub rotated_to: Option<KeyId>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<OffsetDateTime>,
    pub usage_count: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// A key id, a user id, or `system`.
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl KeyResponse {
    pub fn new(key: &Key, now: OffsetDateTime) -> Self {
        Self {
            id: key.id,
            kind: key.kind,
            keyspace_id: key.keyspace_id,
            name: key.name.clone(),
            description: key.description.clone(),
            environment: key.environment,
            key_prefix: key.key_prefix.clone(),
            status: key.status(now),
            scopes: key.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            resource: key.resource.as_ref().map(|r| r.as_str().to_owned()),
            tier: key.tier,
            rate_limits: key.rate_limits.iter().map(Into::into).collect(),
            quota: key.quota.as_ref().map(Into::into),
            ip_allowlist: key.ip_allowlist.entries().collect(),
            expires_at: key.expires_at,
            idle_timeout_seconds: key.idle_timeout_seconds,
            owner_id: key.owner_id.clone(),
            metadata: key.metadata.clone(),
            is_active: key.is_active,
            revoked_at: key.revoked_at,
            rotated_from: key.rotated_from,
            rotated_to: key.rotated_to,
            last_used_at: key.last_used_at,
            usage_count: key.usage_count,
            created_at: key.created_at,
            created_by: key.created_by.to_string(),
            updated_at: key.updated_at,
        }
    }
}

/// A key just created or rotated, with its plaintext: shown this once, never again.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedKeyResponse {
    #[serde(flatten)]
    pub record: KeyResponse,
    /// The plaintext key. Store it now: Keyward keeps only its hash.
    #[schema(value_type = String, example = "kw_live_3kTMd9nQ2xWvB7pLr0aZc5Yh8JfE1uGi0q4Rbx")]
    pub key: SecretString,
}

impl IssuedKeyResponse {
    pub fn new(issued: &keyward_domain::service::IssuedKey, now: OffsetDateTime) -> Self {
        Self {
            record: KeyResponse::new(&issued.key, now),
            key: SecretString(issued.plaintext.expose_secret().to_owned()),
        }
    }
}

/// Usage counters of `GET /v1/keys/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyUsageSummary {
    pub requests_today: u64,
    pub requests_this_month: u64,
}

/// `GET /v1/keys/{id}`: the key and its usage.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyWithUsageResponse {
    #[serde(flatten)]
    pub record: KeyResponse,
    /// Verifications today and this month (UTC), as of the last usage flush (≤ 1 s).
    pub usage: Option<KeyUsageSummary>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyListResponse {
    pub data: Vec<KeyResponse>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    /// Keys matching the filters, across all pages.
    pub total: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevokeKeyResponse {
    #[schema(value_type = String)]
    pub id: KeyId,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub revoked_at: OffsetDateTime,
}

/// `POST /v1/keys/verify`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyKeyRequest {
    /// The key your customer presented.
    #[schema(value_type = String)]
    pub key: SecretString,
    /// Scopes the request needs; all must be granted.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The resource the request touches (`type:id`), checked against the key's binding.
    pub resource: Option<String>,
    /// Your customer's IP address, checked against the key's allowlist.
    #[schema(value_type = Option<String>)]
    pub ip: Option<std::net::IpAddr>,
    /// Credits to spend from the key's quota (default 1).
    pub cost: Option<u32>,
    /// Your endpoint the key was presented to, for the usage records.
    pub endpoint: Option<String>,
    pub method: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RateLimitState {
    pub limit: u64,
    pub remaining: u64,
    pub reset_seconds: u64,
}

/// Always 200: `valid` and `code` say what was found.
// Borrows from the cached record, so answering a verification copies nothing of the key.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyKeyResponse<'a> {
    pub valid: bool,
    /// `VALID`, `NOT_FOUND`, `REVOKED`, `EXPIRED`, `INACTIVE`, `IP_NOT_ALLOWED`,
    /// `WRONG_RESOURCE`, `INSUFFICIENT_SCOPE`, `RATE_LIMITED` or `QUOTA_EXHAUSTED`.
    #[schema(value_type = String, example = "VALID")]
    pub code: keyward_domain::VerifyCode,
    #[schema(value_type = Option<String>)]
    pub key_id: Option<KeyId>,
    #[schema(value_type = Option<String>)]
    pub keyspace_id: Option<KeyspaceId>,
    #[schema(value_type = Option<String>)]
    pub name: Option<&'a str>,
    #[schema(value_type = Option<String>)]
    pub environment: Option<Environment>,
    #[schema(value_type = Option<Vec<String>>)]
    pub scopes: Option<&'a keyward_domain::ScopeSet>,
    #[schema(value_type = Option<String>)]
    pub resource: Option<&'a str>,
    #[schema(value_type = Option<String>)]
    pub tier: Option<Tier>,
    #[schema(value_type = Option<String>)]
    pub owner_id: Option<&'a str>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<MetadataJson<'a>>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    pub ratelimit: Option<RateLimitState>,
    pub quota_remaining: Option<i64>,
}

/// A key's metadata as the JSON text the cache keeps, written out verbatim; `{}` when the
/// key has none.
#[derive(Debug, Clone, Copy)]
pub struct MetadataJson<'a>(pub Option<&'a serde_json::value::RawValue>);

impl Serialize for MetadataJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        match self.0 {
            Some(raw) => raw.serialize(serializer),
            None => serializer.serialize_map(Some(0))?.end(),
        }
    }
}

/// `POST /v1/keyspaces`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyspaceRequest {
    #[schema(example = "crucible")]
    pub name: String,
    /// 2–20 characters of `[a-z0-9_]`; default `kw`.
    #[schema(example = "gmk_cru")]
    pub prefix: Option<String>,
    #[schema(value_type = Option<String>)]
    pub default_tier: Option<Tier>,
    pub default_scopes: Option<Vec<String>>,
    /// When set, keys of this keyspace may hold only these scopes.
    pub allowed_scopes: Option<Vec<String>>,
    /// `open` (default) or `allowlist_required`.
    #[schema(value_type = Option<String>)]
    pub ip_policy: Option<IpPolicy>,
}

impl From<CreateKeyspaceRequest> for NewKeyspace {
    fn from(r: CreateKeyspaceRequest) -> Self {
        NewKeyspace {
            name: r.name,
            prefix: r.prefix,
            default_tier: r.default_tier,
            default_scopes: r.default_scopes,
            allowed_scopes: r.allowed_scopes,
            ip_policy: r.ip_policy,
        }
    }
}

/// `PATCH /v1/keyspaces/{id}`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKeyspaceRequest {
    pub name: Option<String>,
    pub prefix: Option<String>,
    #[schema(value_type = Option<String>)]
    pub default_tier: Option<Tier>,
    pub default_scopes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub allowed_scopes: Option<Option<Vec<String>>>,
    #[schema(value_type = Option<String>)]
    pub ip_policy: Option<IpPolicy>,
}

impl From<UpdateKeyspaceRequest> for KeyspacePatch {
    fn from(r: UpdateKeyspaceRequest) -> Self {
        KeyspacePatch {
            name: r.name,
            prefix: r.prefix,
            default_tier: r.default_tier,
            default_scopes: r.default_scopes,
            allowed_scopes: r.allowed_scopes,
            ip_policy: r.ip_policy,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyspaceResponse {
    #[schema(value_type = String)]
    pub id: KeyspaceId,
    pub name: String,
    pub prefix: String,
    #[schema(value_type = String)]
    pub default_tier: Tier,
    pub default_scopes: Vec<String>,
    pub allowed_scopes: Option<Vec<String>>,
    #[schema(value_type = String)]
    pub ip_policy: IpPolicy,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<&Keyspace> for KeyspaceResponse {
    fn from(k: &Keyspace) -> Self {
        let strings = |s: &keyward_domain::ScopeSet| s.iter().map(|s| s.as_str().to_owned()).collect();
        Self {
            id: k.id,
            name: k.name.clone(),
            prefix: k.prefix.as_str().to_owned(),
            default_tier: k.default_tier,
            default_scopes: strings(&k.default_scopes),
            allowed_scopes: k.allowed_scopes.as_ref().map(strings),
            ip_policy: k.ip_policy,
            created_at: k.created_at,
            updated_at: k.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyspaceListResponse {
    pub data: Vec<KeyspaceResponse>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountLimits {
    /// `null`: unlimited.
    pub max_keys: Option<u64>,
    pub active_keys: u64,
    pub audit_retention_days: u32,
    pub account_keys_allowed: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountResponse {
    #[schema(value_type = String)]
    pub id: keyward_domain::AccountId,
    pub name: String,
    #[schema(value_type = String, example = "pro")]
    pub plan: keyward_domain::Plan,
    pub limits: AccountLimits,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<AccountOverview> for AccountResponse {
    fn from(o: AccountOverview) -> Self {
        Self {
            id: o.account.id,
            name: o.account.name,
            plan: o.account.plan,
            limits: AccountLimits {
                max_keys: o.limits.max_keys,
                active_keys: o.counts.active,
                audit_retention_days: o.limits.audit_retention_days,
                account_keys_allowed: o.limits.account_keys_allowed,
            },
            created_at: o.account.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    /// `ok`, or `unavailable` with 503.
    pub status: &'static str,
}

/// The error envelope of every non-2xx response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    #[schema(example = "validation_failed")]
    pub error: String,
    pub message: String,
    #[schema(example = "req_0F9u2Xf1l8tQkz5Hc0Yw3e")]
    pub request_id: String,
    #[schema(example = "http://127.0.0.1:8080/docs/errors/validation_failed")]
    pub documentation_url: String,
    /// For `validation_failed`: one entry per invalid field.
    pub details: Option<Vec<FieldErrorDto>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FieldErrorDto {
    pub field: String,
    pub message: String,
}

/// `GET /v1/audit` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// 1–100, default 50.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Events by or about this key.
    pub key_id: Option<String>,
    pub actor_id: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub action: Option<String>,
    #[param(value_type = Option<String>)]
    pub result: Option<keyward_domain::audit::AuditResult>,
    #[serde(default, deserialize_with = "crate::timestamp::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "crate::timestamp::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<OffsetDateTime>,
}

/// One audit event.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventResponse {
    #[schema(example = "evt_0351wCjFl5LDteAD5GyVhk")]
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub ts: OffsetDateTime,
    pub account_id: Option<String>,
    /// `user`, `key` or `system`.
    pub actor_type: &'static str,
    pub actor_id: Option<String>,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    #[schema(value_type = String, example = "success")]
    pub result: keyward_domain::audit::AuditResult,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Metadata,
    /// This event's link in the account's hash chain (hex).
    pub hash: String,
}

impl From<&keyward_domain::audit::AuditRecord> for AuditEventResponse {
    fn from(r: &keyward_domain::audit::AuditRecord) -> Self {
        let e = &r.event;
        let (actor_type, actor_id) = match e.actor {
            keyward_domain::Actor::User(id) => ("user", Some(id.to_string())),
            keyward_domain::Actor::Key(id) => ("key", Some(id.to_string())),
            keyward_domain::Actor::System => ("system", None),
        };
        Self {
            id: e.id.to_string(),
            ts: e.ts,
            account_id: e.account_id.map(|a| a.to_string()),
            actor_type,
            actor_id,
            action: e.action.to_string(),
            resource_type: e.resource_type.to_string(),
            resource_id: e.resource_id.clone(),
            result: e.result,
            ip: e.context.ip.map(|ip| ip.to_string()),
            user_agent: e.context.user_agent.clone(),
            request_id: e.context.request_id.map(|r| r.to_string()),
            metadata: e.metadata.clone(),
            hash: r.hash.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditListResponse {
    pub data: Vec<AuditEventResponse>,
    pub next_cursor: Option<String>,
}

/// `GET /v1/keys/{id}/usage` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// 1–100, default 50.
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    #[serde(default, deserialize_with = "crate::timestamp::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "crate::timestamp::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<OffsetDateTime>,
}

/// One metered request.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageRecordResponse {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub ts: OffsetDateTime,
    pub endpoint: Option<String>,
    pub method: Option<String>,
    pub status_code: Option<u16>,
    pub response_time_ms: Option<u32>,
    pub ip: Option<String>,
    /// The verdict of a verification; `null` for a management call made with the key.
    #[schema(value_type = Option<String>, example = "VALID")]
    pub outcome: Option<keyward_domain::VerifyCode>,
}

impl From<&keyward_domain::usage::UsageRecord> for UsageRecordResponse {
    fn from(r: &keyward_domain::usage::UsageRecord) -> Self {
        Self {
            ts: r.ts,
            endpoint: r.endpoint.clone(),
            method: r.method.clone(),
            status_code: r.status_code,
            response_time_ms: r.response_time_ms,
            ip: r.ip.map(|ip| ip.to_string()),
            outcome: r.outcome,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageListResponse {
    pub data: Vec<UsageRecordResponse>,
    pub next_cursor: Option<String>,
}

/// `GET /v1/stats`
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsResponse {
    pub active_keys: u64,
    pub revoked_keys: u64,
    pub verifications_total: u64,
    pub verifications_today: u64,
    /// Share of VALID verdicts, 0–1.
    pub success_rate: f64,
    pub avg_response_time_ms: Option<f64>,
    pub by_code: std::collections::BTreeMap<String, u64>,
}
