//! Keyspaces: named groups of service keys with their own prefix and defaults.

use time::OffsetDateTime;

use crate::{
    id::{AccountId, KeyspaceId},
    key_format::{CHECKSUM_LEN, Environment, KeyPrefix, RANDOM_LEN},
    plan::{Tier, text_enum},
    scope::ScopeSet,
};

/// What a key without an IP allowlist may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpPolicy {
    /// No allowlist: usable from anywhere.
    #[default]
    Open,
    /// No allowlist: usable from nowhere (deny by default).
    AllowlistRequired,
}

text_enum!(IpPolicy { Open => "open", AllowlistRequired => "allowlist_required" });

/// What happens to a key of the keyspace reported leaked (found in public by a secret
/// scanner such as GitHub's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeakPolicy {
    /// Record the leak (`leaked_at`, the source, an audit event); the key keeps working.
    Notify,
    /// Also disable the key (`is_active: false`); an administrator may re-enable it.
    Disable,
    /// Also revoke the key, for good.
    Revoke,
}

text_enum!(LeakPolicy { Notify => "notify", Disable => "disable", Revoke => "revoke" });

impl LeakPolicy {
    /// The policy applied to a leaked key of `environment` when its keyspace sets `configured`:
    /// that policy, or by default `revoke` for live keys and `notify` for test keys (a test
    /// key reaches no customer's data or money, and revoking it would only break a build).
    pub fn effective(configured: Option<Self>, environment: Environment) -> Self {
        configured.unwrap_or(match environment {
            Environment::Live => Self::Revoke,
            Environment::Test => Self::Notify,
        })
    }
}

/// The regular expression that matches the keys of a keyspace with `prefix`, as an operator
/// registers it with a secret scanner (GitHub's secret-scanning partner program): the
/// prefix, the environment, 30 random and 6 checksum characters of base62, at word bounds.
pub fn leak_pattern(prefix: &KeyPrefix) -> String {
    format!(r"\b{}_(?:live|test)_[0-9A-Za-z]{{{}}}\b", prefix.as_str(), RANDOM_LEN + CHECKSUM_LEN)
}

pub const DEFAULT_KEYSPACE_NAME: &str = "default";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyspace {
    pub id: KeyspaceId,
    pub account_id: AccountId,
    pub name: String,
    pub prefix: KeyPrefix,
    pub default_tier: Tier,
    pub default_scopes: ScopeSet,
    /// When set, keys of this keyspace may only hold scopes granted by this catalogue.
    pub allowed_scopes: Option<ScopeSet>,
    pub ip_policy: IpPolicy,
    /// What happens to a key of the keyspace found leaked; `None`: [`LeakPolicy::effective`]'s
    /// default by environment.
    pub leak_policy: Option<LeakPolicy>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}
