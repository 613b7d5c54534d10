//! Keyspaces: named groups of service keys with their own prefix and defaults.

use time::OffsetDateTime;

use crate::{
    id::{AccountId, KeyspaceId},
    key_format::KeyPrefix,
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
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}
