//! Keys of the three kinds (account, service, temporary), their attributes and how their
//! status is derived.

use std::{fmt, net::IpAddr, str::FromStr};

use ipnet::IpNet;
use time::{Duration, OffsetDateTime};

use crate::{
    id::{AccountId, KeyId, KeyspaceId, UserId},
    key_format::KeyHash,
    plan::{Tier, UnknownVariant, text_enum},
    scope::ScopeSet,
};

pub const MAX_NAME_LEN: usize = 100;
pub const MAX_DESCRIPTION_LEN: usize = 1_000;
pub const MAX_OWNER_ID_LEN: usize = 255;
pub const MAX_METADATA_BYTES: usize = 4 * 1024;
pub const MAX_IP_ALLOWLIST: usize = 100;
pub const MAX_RATE_LIMIT_WINDOWS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// A management ("root") key for the management API.
    Account,
    /// A key issued to the SaaS's customers and verified by the SaaS.
    Service,
    /// A short-lived management key minted by login.
    Temporary,
}
text_enum!(KeyKind { Account => "account", Service => "service", Temporary => "temporary" });

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Live,
    Test,
}
text_enum!(Environment { Live => "live", Test => "test" });

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Inactive,
    Expired,
    Revoked,
}
text_enum!(KeyStatus { Active => "active", Inactive => "inactive", Expired => "expired", Revoked => "revoked" });

/// Who made something: a person, a key, or Keyward itself (CLI, bootstrap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Actor {
    User(UserId),
    Key(KeyId),
    System,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => id.fmt(f),
            Self::Key(id) => id.fmt(f),
            Self::System => f.write_str("system"),
        }
    }
}

impl FromStr for Actor {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "system" {
            return Ok(Self::System);
        }
        s.parse()
            .map(Self::Key)
            .or_else(|_| s.parse().map(Self::User))
            .map_err(|_| UnknownVariant { expected: "\"system\", a key id or a user id" })
    }
}

impl serde::Serialize for Actor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A named rate-limit window: at most `limit` requests per `period_seconds`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitWindow {
    pub name: String,
    pub limit: u64,
    pub period_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefillInterval {
    Day,
    Month,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refill {
    pub amount: i64,
    pub interval: RefillInterval,
}

/// Credits a key may spend; each verification spends its `cost`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub remaining: i64,
    #[serde(default)]
    pub refill: Option<Refill>,
}

/// A `type:id` binding: the key is valid only for that resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceBinding(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be \"type:id\", at most 255 characters")]
pub struct InvalidResource;

impl ResourceBinding {
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidResource> {
        let value = value.into();
        let valid = value.len() <= 255
            && value.split_once(':').is_some_and(|(kind, id)| {
                !kind.is_empty() && !id.is_empty() && !value.chars().any(char::is_whitespace)
            });
        if valid { Ok(Self(value)) } else { Err(InvalidResource) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for ResourceBinding {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// A key as stored: everything but the plaintext, which is never kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub id: KeyId,
    pub account_id: AccountId,
    /// The keyspace of a service key; account and temporary keys have none.
    pub keyspace_id: Option<KeyspaceId>,
    pub kind: KeyKind,
    pub name: String,
    pub description: Option<String>,
    pub environment: Environment,
    /// Display form (`gmk_cru_live_Ab3d…9xQz`); empty-ish (`…`) for imported keys.
    pub key_prefix: String,
    pub hash: KeyHash,
    pub scopes: ScopeSet,
    pub resource: Option<ResourceBinding>,
    pub tier: Tier,
    pub rate_limits: Vec<RateLimitWindow>,
    pub quota: Option<Quota>,
    pub ip_allowlist: Vec<IpNet>,
    pub expires_at: Option<OffsetDateTime>,
    pub idle_timeout_seconds: Option<u32>,
    pub owner_id: Option<String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub is_active: bool,
    pub revoked_at: Option<OffsetDateTime>,
    pub rotated_from: Option<KeyId>,
    pub rotated_to: Option<KeyId>,
    pub last_used_at: Option<OffsetDateTime>,
    pub usage_count: u64,
    pub created_at: OffsetDateTime,
    pub created_by: Actor,
    pub updated_at: OffsetDateTime,
}

impl Key {
    /// Status, derived in SPEC order: revoked > expired > inactive > active. A key idle for
    /// longer than its idle timeout is expired.
    pub fn status(&self, now: OffsetDateTime) -> KeyStatus {
        if self.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if self.is_expired(now) {
            KeyStatus::Expired
        } else if !self.is_active {
            KeyStatus::Inactive
        } else {
            KeyStatus::Active
        }
    }

    fn is_expired(&self, now: OffsetDateTime) -> bool {
        let past_expiry = self.expires_at.is_some_and(|at| at <= now);
        let idle = self.idle_timeout_seconds.is_some_and(|timeout| {
            let since = self.last_used_at.unwrap_or(self.created_at);
            since + Duration::seconds(i64::from(timeout)) <= now
        });
        past_expiry || idle
    }

    /// Whether a request from `ip` passes the key's allowlist under its keyspace's policy.
    /// A missing `ip` passes only where no allowlist applies: the check fails closed.
    pub fn allows_ip(&self, ip: Option<IpAddr>, policy: crate::keyspace::IpPolicy) -> bool {
        if self.ip_allowlist.is_empty() {
            return policy == crate::keyspace::IpPolicy::Open;
        }
        ip.is_some_and(|ip| self.ip_allowlist.iter().any(|net| net.contains(&ip)))
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use crate::random::SeededRandom;

    pub(crate) fn sample_key(now: OffsetDateTime) -> Key {
        let rng = SeededRandom::new(3);
        Key {
            id: KeyId::generate(now, &rng),
            account_id: AccountId::generate(now, &rng),
            keyspace_id: None,
            kind: KeyKind::Service,
            name: "k".into(),
            description: None,
            environment: Environment::Live,
            key_prefix: "kw_live_abcd…wxyz".into(),
            hash: KeyHash::blake3("x"),
            scopes: ScopeSet::default(),
            resource: None,
            tier: Tier::Free,
            rate_limits: vec![],
            quota: None,
            ip_allowlist: vec![],
            expires_at: None,
            idle_timeout_seconds: None,
            owner_id: None,
            metadata: serde_json::Map::new(),
            is_active: true,
            revoked_at: None,
            rotated_from: None,
            rotated_to: None,
            last_used_at: None,
            usage_count: 0,
            created_at: now,
            created_by: Actor::System,
            updated_at: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{tests_support::sample_key, *};
    use crate::keyspace::IpPolicy;

    #[test]
    fn status_precedence_is_revoked_expired_inactive_active() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        let mut key = sample_key(now);
        assert_eq!(key.status(now), KeyStatus::Active);
        key.is_active = false;
        assert_eq!(key.status(now), KeyStatus::Inactive);
        key.expires_at = Some(now);
        assert_eq!(key.status(now), KeyStatus::Expired);
        key.revoked_at = Some(now);
        assert_eq!(key.status(now), KeyStatus::Revoked);
    }

    #[test]
    fn idle_timeout_counts_from_last_use() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        let mut key = sample_key(now);
        key.idle_timeout_seconds = Some(60);
        assert_eq!(key.status(now + Duration::seconds(59)), KeyStatus::Active);
        assert_eq!(key.status(now + Duration::seconds(60)), KeyStatus::Expired);
        key.last_used_at = Some(now + Duration::seconds(50));
        assert_eq!(key.status(now + Duration::seconds(100)), KeyStatus::Active);
    }

    #[test]
    fn allowlist_fails_closed() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let mut key = sample_key(now);
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(key.allows_ip(Some(ip), IpPolicy::Open));
        assert!(key.allows_ip(None, IpPolicy::Open));
        assert!(!key.allows_ip(Some(ip), IpPolicy::AllowlistRequired));
        key.ip_allowlist = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(key.allows_ip(Some(ip), IpPolicy::AllowlistRequired));
        assert!(!key.allows_ip(Some("192.168.0.1".parse().unwrap()), IpPolicy::Open));
        assert!(!key.allows_ip(None, IpPolicy::Open));
    }

    #[test]
    fn resource_binding_is_type_colon_id() {
        assert!(ResourceBinding::new("server:srv_42").is_ok());
        assert!(ResourceBinding::new("server").is_err());
        assert!(ResourceBinding::new(":x").is_err());
        assert!(ResourceBinding::new("a:b c").is_err());
    }
}
