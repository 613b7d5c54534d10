//! The JSON of service keys and of verification.

use super::*;

/// `POST /v1/keys`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    #[schema(value_type = Option<String>, pattern = "^ks_[0-6][0-9A-Za-z]{21}$", example = "ks_0F9u2Xf1l8tQkz5Hc0Yw3e")]
    pub keyspace_id: Option<KeyspaceId>,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$",
        example = "server srv_42"
    )]
    pub name: String,
    #[schema(max_length = 1000, pattern = r"^[^\u0000]*$")]
    pub description: Option<String>,
    #[schema(value_type = Option<schema::EnvironmentName>, example = "live")]
    pub environment: Option<Environment>,
    #[schema(value_type = Option<Vec<schema::ScopeText>>, max_items = 100, example = json!(["server:*", "ip:setptr"]))]
    pub scopes: Option<Vec<String>>,
    #[schema(example = "server:srv_42", pattern = r"^[^:\s]+:\S+$", max_length = 255)]
    pub resource: Option<String>,
    #[schema(value_type = Option<schema::TierName>, example = "pro")]
    pub tier: Option<Tier>,
    #[schema(max_items = 10)]
    pub rate_limits: Option<Vec<RateLimitWindowDto>>,
    pub quota: Option<QuotaDto>,
    #[schema(max_items = 100, example = json!(["203.0.113.0/24", "2001:db8::1"]))]
    pub ip_allowlist: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    #[schema(minimum = 1, maximum = 2147483647)]
    pub idle_timeout_seconds: Option<u32>,
    #[schema(max_length = 255, pattern = r"^[^\u0000]*$")]
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
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub name: String,
    #[schema(max_length = 1000, pattern = r"^[^\u0000]*$")]
    pub description: Option<String>,
    #[schema(value_type = Option<schema::EnvironmentName>)]
    pub environment: Option<Environment>,
    #[schema(value_type = Option<Vec<schema::ScopeText>>, max_items = 100)]
    pub scopes: Option<Vec<String>>,
    #[schema(pattern = r"^[^:\s]+:\S+$", max_length = 255)]
    pub resource: Option<String>,
    #[schema(value_type = Option<schema::TierName>)]
    pub tier: Option<Tier>,
    #[schema(max_items = 10)]
    pub rate_limits: Option<Vec<RateLimitWindowDto>>,
    pub quota: Option<QuotaDto>,
    #[schema(max_items = 100)]
    pub ip_allowlist: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    #[schema(minimum = 1, maximum = 2147483647)]
    pub idle_timeout_seconds: Option<u32>,
    #[schema(max_length = 255, pattern = r"^[^\u0000]*$")]
    pub owner_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Metadata>,
}

impl ImportKeyEntry {
    pub fn into_domain(self) -> keyward_domain::key_service::ImportedKey {
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
        keyward_domain::key_service::ImportedKey { hash, attributes: attributes.into() }
    }
}

/// `POST /v1/keys/import`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportKeysRequest {
    #[schema(value_type = Option<String>, pattern = "^ks_[0-6][0-9A-Za-z]{21}$")]
    pub keyspace_id: Option<KeyspaceId>,
    #[schema(min_items = 1, max_items = 1000)]
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
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    pub description: Option<Option<String>>,
    #[schema(value_type = Option<Vec<schema::ScopeText>>, max_items = 100)]
    pub scopes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(pattern = r"^[^:\s]+:\S+$", max_length = 255)]
    pub resource: Option<Option<String>>,
    #[schema(value_type = Option<schema::TierName>)]
    pub tier: Option<Tier>,
    #[schema(max_items = 10)]
    pub rate_limits: Option<Vec<RateLimitWindowDto>>,
    #[serde(default, deserialize_with = "double_option")]
    pub quota: Option<Option<QuotaDto>>,
    #[schema(max_items = 100)]
    pub ip_allowlist: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::timestamp::double_option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Option<OffsetDateTime>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 2147483647)]
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
    #[schema(minimum = 0, maximum = 604800)]
    pub grace_period_seconds: u32,
}

/// `GET /v1/keys` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListKeysQuery {
    #[param(value_type = Option<String>, pattern = "^ks_[0-6][0-9A-Za-z]{21}$")]
    pub keyspace_id: Option<KeyspaceId>,
    #[param(value_type = Option<schema::EnvironmentName>)]
    pub environment: Option<Environment>,
    #[param(value_type = Option<schema::KeyStatusName>)]
    pub status: Option<KeyStatus>,
    pub owner_id: Option<String>,
    /// 1–100, default 50.
    #[param(minimum = 1, maximum = 100)]
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
    #[schema(max_length = 1000, pattern = r"^[^\u0000]*$")]
    pub description: Option<String>,
    #[schema(value_type = String)]
    pub environment: Environment,
    /// Display form: enough to recognise the key, too little to use it.
    #[schema(example = "gmk_cru_live_Ab3d…9xQz")]
    pub key_prefix: String,
    #[schema(value_type = String, example = "active")]
    pub status: KeyStatus,
    pub scopes: Vec<String>,
    #[schema(pattern = r"^[^:\s]+:\S+$", max_length = 255)]
    pub resource: Option<String>,
    #[schema(value_type = String)]
    pub tier: Tier,
    pub rate_limits: Vec<RateLimitWindowDto>,
    pub quota: Option<QuotaDto>,
    pub ip_allowlist: Vec<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    #[schema(minimum = 1, maximum = 2147483647)]
    pub idle_timeout_seconds: Option<u32>,
    #[schema(max_length = 255, pattern = r"^[^\u0000]*$")]
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
    /// When the key was first reported found in public (docs/leaks.md).
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub leaked_at: Option<OffsetDateTime>,
    /// Where that report said it was found (a URL), or `public` for a public report.
    pub leak_source: Option<String>,
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
            leaked_at: key.leaked_at,
            leak_source: key.leak_source.clone(),
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
    pub fn new(issued: &keyward_domain::key_service::IssuedKey, now: OffsetDateTime) -> Self {
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
    #[schema(value_type = Vec<schema::ScopeText>)]
    pub scopes: Vec<String>,
    /// The resource the request touches (`type:id`), checked against the key's binding.
    #[schema(pattern = r"^[^:\s]+:\S+$", max_length = 255)]
    pub resource: Option<String>,
    /// Your customer's IP address, checked against the key's allowlist.
    #[schema(value_type = Option<schema::IpAddressText>)]
    pub ip: Option<std::net::IpAddr>,
    /// Credits to spend from the key's quota (default 1).
    #[schema(minimum = 0, maximum = 1000000)]
    pub cost: Option<u32>,
    /// Your endpoint the key was presented to, for the usage records.
    #[schema(max_length = 1024, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub endpoint: Option<String>,
    #[schema(max_length = 32, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
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
    #[schema(value_type = Option<String>, pattern = r"^[^:\s]+:\S+$", max_length = 255)]
    pub resource: Option<&'a str>,
    #[schema(value_type = Option<schema::TierName>)]
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
