//! The JSON of keyspaces and of the account.

use super::*;

/// `POST /v1/keyspaces`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyspaceRequest {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$",
        example = "crucible"
    )]
    pub name: String,
    /// 2–20 characters of `[a-z0-9_]`; default `kw`.
    #[schema(pattern = "^[a-z0-9][a-z0-9_]{0,18}[a-z0-9]$", example = "gmk_cru")]
    pub prefix: Option<String>,
    #[schema(value_type = Option<schema::TierName>)]
    pub default_tier: Option<Tier>,
    #[schema(value_type = Option<Vec<schema::ScopeText>>, max_items = 100)]
    pub default_scopes: Option<Vec<String>>,
    /// When set, keys of this keyspace may hold only these scopes.
    #[schema(value_type = Option<Vec<schema::ScopeText>>, max_items = 100)]
    pub allowed_scopes: Option<Vec<String>>,
    /// `open` (default) or `allowlist_required`.
    #[schema(value_type = Option<schema::IpPolicyName>)]
    pub ip_policy: Option<IpPolicy>,
    /// What happens to a key of this keyspace reported leaked: `notify`, `disable` or
    /// `revoke`. Absent: `revoke` for live keys, `notify` for test keys.
    #[schema(value_type = Option<schema::LeakPolicyName>)]
    pub leak_policy: Option<LeakPolicy>,
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
            leak_policy: r.leak_policy,
        }
    }
}

/// `PATCH /v1/keyspaces/{id}`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKeyspaceRequest {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub name: Option<String>,
    #[schema(pattern = "^[a-z0-9][a-z0-9_]{0,18}[a-z0-9]$")]
    pub prefix: Option<String>,
    #[schema(value_type = Option<schema::TierName>)]
    pub default_tier: Option<Tier>,
    #[schema(value_type = Option<Vec<schema::ScopeText>>, max_items = 100)]
    pub default_scopes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<schema::ScopeText>>, max_items = 100)]
    pub allowed_scopes: Option<Option<Vec<String>>>,
    #[schema(value_type = Option<schema::IpPolicyName>)]
    pub ip_policy: Option<IpPolicy>,
    /// `null`: back to the default by environment.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<schema::LeakPolicyName>, nullable)]
    pub leak_policy: Option<Option<LeakPolicy>>,
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
            leak_policy: r.leak_policy,
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
    /// The policy set for leaked keys; `null`: `revoke` for live keys, `notify` for test keys.
    #[schema(value_type = Option<schema::LeakPolicyName>)]
    pub leak_policy: Option<LeakPolicy>,
    /// The regular expression that matches this keyspace's keys, to register with a secret
    /// scanner (GitHub's secret-scanning partner program; docs/leaks.md).
    #[schema(example = r"\bkw_(?:live|test)_[0-9A-Za-z]{36}\b")]
    pub leak_pattern: String,
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
            leak_policy: k.leak_policy,
            leak_pattern: keyward_domain::keyspace::leak_pattern(&k.prefix),
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
