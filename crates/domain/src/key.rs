//! Keys of the three kinds (account, service, temporary), their attributes and how their
//! status is derived.

mod allowlist;

pub use allowlist::{Hostname, InvalidAllowlistEntry, IpAllowlist};

use std::{fmt, net::IpAddr, str::FromStr};

use serde_json::value::RawValue;

use ipnet::IpNet;
use time::{Duration, OffsetDateTime};

use crate::{
    id::{AccountId, KeyId, KeyspaceId, UserId},
    key_format::{Environment, KeyHash},
    keyspace::IpPolicy,
    plan::{Tier, UnknownVariant, text_enum},
    quota::{Quota, QuotaBalance},
    scope::{Scope, ScopeSet},
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
    /// The quota's balance as the usage flush last stored it (`None` before any spend):
    /// where a ledger without a balance of its own starts ([`crate::quota`]).
    pub quota_balance: Option<QuotaBalance>,
    pub ip_allowlist: IpAllowlist,
    pub expires_at: Option<OffsetDateTime>,
    pub idle_timeout_seconds: Option<u32>,
    pub owner_id: Option<String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub is_active: bool,
    pub revoked_at: Option<OffsetDateTime>,
    pub rotated_from: Option<KeyId>,
    pub rotated_to: Option<KeyId>,
    /// When the key was first reported found in public (a secret scanner's report, or a
    /// public report of it); the first report's time and source are kept.
    pub leaked_at: Option<OffsetDateTime>,
    /// Where the first report said it was found (a URL), or who reported it.
    pub leak_source: Option<String>,
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
        status_at(self.revoked_at, self.expires_at, self.idle_deadline(), self.is_active, now)
    }

    /// When the idle timeout expires the key unless it is used again: the last use (or the
    /// creation) plus the timeout.
    pub fn idle_deadline(&self) -> Option<OffsetDateTime> {
        self.idle_timeout_seconds
            .map(|timeout| self.last_used_at.unwrap_or(self.created_at) + Duration::seconds(i64::from(timeout)))
    }

    /// Whether a request from `ip` passes the key's allowlist under its keyspace's policy,
    /// its host names standing for the addresses in `resolved`. A missing `ip` passes only
    /// where no allowlist applies: the check fails closed.
    pub fn allows_ip(&self, ip: Option<IpAddr>, policy: IpPolicy, resolved: &[IpAddr]) -> bool {
        allowlist_admits(&self.ip_allowlist.nets, !self.ip_allowlist.hosts.is_empty(), ip, policy, resolved)
    }
}

/// Status in SPEC order, from the few fields it depends on (shared by [`Key`] and
/// [`VerifiableKey`], so the two can never disagree).
fn status_at(
    revoked_at: Option<OffsetDateTime>,
    expires_at: Option<OffsetDateTime>,
    idle_deadline: Option<OffsetDateTime>,
    is_active: bool,
    now: OffsetDateTime,
) -> KeyStatus {
    if revoked_at.is_some() {
        KeyStatus::Revoked
    } else if expires_at.is_some_and(|at| at <= now) || idle_deadline.is_some_and(|at| at <= now) {
        KeyStatus::Expired
    } else if !is_active {
        KeyStatus::Inactive
    } else {
        KeyStatus::Active
    }
}

fn allowlist_admits(
    nets: &[IpNet],
    has_hosts: bool,
    ip: Option<IpAddr>,
    policy: IpPolicy,
    resolved: &[IpAddr],
) -> bool {
    if nets.is_empty() && !has_hosts {
        return policy == IpPolicy::Open;
    }
    ip.is_some_and(|ip| nets.iter().any(|net| net.contains(&ip)) || resolved.contains(&ip))
}

/// What verification needs of a key, and what its answer shows, in as little memory as the
/// verification cache can hold a million times (docs/performance.md): no description,
/// display prefix or history, text as `Box<str>`, metadata kept as its JSON text (written
/// verbatim into responses, never parsed on the hot path), and the attributes most keys do
/// not have behind one optional box.
///
/// Stores hand these out shared (`Arc`): a cache hit is a reference count, not a copy.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiableKey {
    pub id: KeyId,
    pub account_id: AccountId,
    pub keyspace_id: Option<KeyspaceId>,
    pub kind: KeyKind,
    pub environment: Environment,
    pub tier: Tier,
    /// The policy of the key's keyspace for keys without an allowlist.
    pub ip_policy: IpPolicy,
    pub is_active: bool,
    pub name: Box<str>,
    pub scopes: ScopeSet,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    /// See [`Key::idle_deadline`].
    pub idle_deadline: Option<OffsetDateTime>,
    pub last_used_at: Option<OffsetDateTime>,
    extras: Option<Box<KeyExtras>>,
}

/// The optional attributes, boxed together: a key with none of them costs one pointer.
#[derive(Debug, Clone)]
struct KeyExtras {
    resource: Option<ResourceBinding>,
    rate_limits: Box<[RateLimitWindow]>,
    quota: Option<Quota>,
    quota_balance: Option<QuotaBalance>,
    ip_allowlist: Box<[IpNet]>,
    allowlist_hosts: Box<[Hostname]>,
    owner_id: Option<Box<str>>,
    metadata: Option<Box<RawValue>>,
}

impl KeyExtras {
    fn is_empty(&self) -> bool {
        self.resource.is_none()
            && self.rate_limits.is_empty()
            && self.quota.is_none()
            && self.ip_allowlist.is_empty()
            && self.allowlist_hosts.is_empty()
            && self.owner_id.is_none()
            && self.metadata.is_none()
    }
}

// `RawValue` has no `PartialEq`: metadata compares as the text it is kept as.
impl PartialEq for KeyExtras {
    fn eq(&self, other: &Self) -> bool {
        self.resource == other.resource
            && self.rate_limits == other.rate_limits
            && self.quota == other.quota
            && self.quota_balance == other.quota_balance
            && self.ip_allowlist == other.ip_allowlist
            && self.allowlist_hosts == other.allowlist_hosts
            && self.owner_id == other.owner_id
            && self.metadata.as_deref().map(RawValue::get) == other.metadata.as_deref().map(RawValue::get)
    }
}

impl VerifiableKey {
    /// The verification view of `key`, which lives in a keyspace with `ip_policy`.
    pub fn new(key: Key, ip_policy: IpPolicy) -> Self {
        let idle_deadline = key.idle_deadline();
        // A map that fails to serialize cannot come from storage (it was JSON there);
        // showing no metadata is then the safe answer.
        let metadata = if key.metadata.is_empty() { None } else { serde_json::value::to_raw_value(&key.metadata).ok() };
        let extras = KeyExtras {
            resource: key.resource,
            rate_limits: key.rate_limits.into_boxed_slice(),
            // Kept only with a quota: a key without one has no use for it.
            quota_balance: key.quota.and(key.quota_balance),
            quota: key.quota,
            ip_allowlist: key.ip_allowlist.nets.into_boxed_slice(),
            allowlist_hosts: key.ip_allowlist.hosts.into_boxed_slice(),
            owner_id: key.owner_id.map(String::into_boxed_str),
            metadata,
        };
        Self {
            id: key.id,
            account_id: key.account_id,
            keyspace_id: key.keyspace_id,
            kind: key.kind,
            environment: key.environment,
            tier: key.tier,
            ip_policy,
            is_active: key.is_active,
            name: key.name.into_boxed_str(),
            scopes: key.scopes,
            expires_at: key.expires_at,
            revoked_at: key.revoked_at,
            idle_deadline,
            last_used_at: key.last_used_at,
            extras: (!extras.is_empty()).then(|| Box::new(extras)),
        }
    }

    pub fn status(&self, now: OffsetDateTime) -> KeyStatus {
        status_at(self.revoked_at, self.expires_at, self.idle_deadline, self.is_active, now)
    }

    /// See [`Key::allows_ip`].
    pub fn allows_ip(&self, ip: Option<IpAddr>, resolved: &[IpAddr]) -> bool {
        allowlist_admits(self.ip_allowlist(), !self.allowlist_hosts().is_empty(), ip, self.ip_policy, resolved)
    }

    pub fn resource(&self) -> Option<&ResourceBinding> {
        self.extras.as_ref().and_then(|e| e.resource.as_ref())
    }

    pub fn rate_limits(&self) -> &[RateLimitWindow] {
        self.extras.as_ref().map_or(&[], |e| &e.rate_limits)
    }

    pub fn quota(&self) -> Option<&Quota> {
        self.extras.as_ref().and_then(|e| e.quota.as_ref())
    }

    /// See [`Key::quota_balance`].
    pub fn quota_balance(&self) -> Option<&QuotaBalance> {
        self.extras.as_ref().and_then(|e| e.quota_balance.as_ref())
    }

    /// The addresses and networks of the allowlist.
    pub fn ip_allowlist(&self) -> &[IpNet] {
        self.extras.as_ref().map_or(&[], |e| &e.ip_allowlist)
    }

    /// The host names of the allowlist.
    pub fn allowlist_hosts(&self) -> &[Hostname] {
        self.extras.as_ref().map_or(&[], |e| &e.allowlist_hosts)
    }

    pub fn owner_id(&self) -> Option<&str> {
        self.extras.as_ref().and_then(|e| e.owner_id.as_deref())
    }

    /// The metadata object as JSON text; `None` when it is empty.
    pub fn metadata_json(&self) -> Option<&RawValue> {
        self.extras.as_ref().and_then(|e| e.metadata.as_deref())
    }

    /// The bytes this record holds, inline and on the heap (allocator overhead aside): what
    /// a cache weighs it at against its memory bound.
    pub fn footprint(&self) -> usize {
        let scopes = 2 * size_of::<usize>() // the Arc's counts
            + self.scopes.iter().map(|s| size_of::<Scope>() + s.as_str().len()).sum::<usize>();
        let extras = self.extras.as_ref().map_or(0, |e| {
            size_of::<KeyExtras>()
                + e.resource.as_ref().map_or(0, |r| r.as_str().len())
                + e.rate_limits.iter().map(|w| size_of::<RateLimitWindow>() + w.name.len()).sum::<usize>()
                + size_of_val(&*e.ip_allowlist)
                + e.allowlist_hosts.iter().map(|h| size_of::<Hostname>() + h.as_str().len()).sum::<usize>()
                + e.owner_id.as_ref().map_or(0, |o| o.len())
                + e.metadata.as_ref().map_or(0, |m| m.get().len())
        });
        size_of::<Self>() + self.name.len() + scopes + extras
    }
}

#[cfg(any(test, feature = "conformance"))]
pub(crate) mod tests_support {
    use super::*;
    use crate::random::SeededRandom;

    /// A plain active service key, for tests (the adapters' through `conformance`).
    pub fn sample_key(now: OffsetDateTime) -> Key {
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
            quota_balance: None,
            ip_allowlist: IpAllowlist::default(),
            expires_at: None,
            idle_timeout_seconds: None,
            owner_id: None,
            metadata: serde_json::Map::new(),
            is_active: true,
            revoked_at: None,
            rotated_from: None,
            rotated_to: None,
            leaked_at: None,
            leak_source: None,
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

    /// What a cache weighs a record at grows with what it holds on the heap.
    #[test]
    fn a_footprint_counts_the_heap_parts() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        let plain = VerifiableKey::new(sample_key(now), IpPolicy::Open).footprint();
        assert!(plain >= std::mem::size_of::<VerifiableKey>());
        let mut key = sample_key(now);
        key.name = "n".repeat(200);
        key.owner_id = Some("o".repeat(300));
        key.metadata.insert("m".into(), serde_json::Value::String("x".repeat(1_000)));
        let larger = VerifiableKey::new(key, IpPolicy::Open).footprint();
        assert!(larger >= plain + 1_500, "{plain} -> {larger}");
    }

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
        assert!(key.allows_ip(Some(ip), IpPolicy::Open, &[]));
        assert!(key.allows_ip(None, IpPolicy::Open, &[]));
        assert!(!key.allows_ip(Some(ip), IpPolicy::AllowlistRequired, &[]));
        key.ip_allowlist.push("10.0.0.0/8").unwrap();
        assert!(key.allows_ip(Some(ip), IpPolicy::AllowlistRequired, &[]));
        assert!(!key.allows_ip(Some("192.168.0.1".parse().unwrap()), IpPolicy::Open, &[]));
        assert!(!key.allows_ip(None, IpPolicy::Open, &[]));
    }

    #[test]
    fn host_names_admit_what_they_resolve_to_and_nothing_unresolved() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let mut key = sample_key(now);
        key.ip_allowlist.push("Office.Example.COM.").unwrap();
        assert_eq!(key.ip_allowlist.hosts, [Hostname::new("office.example.com").unwrap()]);
        let office: IpAddr = "203.0.113.7".parse().unwrap();
        assert!(key.allows_ip(Some(office), IpPolicy::Open, &[office]));
        assert!(!key.allows_ip(Some(office), IpPolicy::Open, &[]), "a name that did not resolve admits nothing");
        assert!(!key.allows_ip(Some("203.0.113.8".parse().unwrap()), IpPolicy::Open, &[office]));
        assert!(!key.allows_ip(None, IpPolicy::Open, &[office]), "an allowlist of names fails closed too");
    }

    #[test]
    fn allowlist_entries_are_addresses_networks_or_host_names() {
        let mut list = IpAllowlist::default();
        for good in ["10.0.0.1", "10.1.2.3/8", "2001:db8::/32", "localhost", "api-1.eu.example.com"] {
            list.push(good).unwrap();
        }
        assert_eq!(
            list.entries().collect::<Vec<_>>(),
            ["10.0.0.1/32", "10.0.0.0/8", "2001:db8::/32", "localhost", "api-1.eu.example.com"]
        );
        for bad in ["", "10.0.0.256", "1.2.3", "-x.example", "a..b", "exa mple.com", "*.example.com", &"a".repeat(64)] {
            assert!(IpAllowlist::default().push(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_verification_view_agrees_with_the_key() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        let mut key = sample_key(now);
        key.idle_timeout_seconds = Some(60);
        key.last_used_at = Some(now + Duration::seconds(30));
        key.owner_id = Some("cust_1".into());
        key.metadata = serde_json::json!({"b": 2, "a": [1, "x"]}).as_object().cloned().unwrap();
        key.ip_allowlist.push("10.0.0.0/8").unwrap();
        key.ip_allowlist.push("localhost").unwrap();
        let view = VerifiableKey::new(key.clone(), IpPolicy::Open);
        for at in [now, now + Duration::seconds(89), now + Duration::seconds(90)] {
            assert_eq!(view.status(at), key.status(at), "at {at}");
        }
        assert_eq!(view.status(now + Duration::seconds(90)), KeyStatus::Expired);
        assert_eq!(view.owner_id(), Some("cust_1"));
        assert_eq!(view.metadata_json().map(RawValue::get), Some(r#"{"a":[1,"x"],"b":2}"#));
        assert!(view.allows_ip(Some("10.9.9.9".parse().unwrap()), &[]));
        assert!(!view.allows_ip(Some("11.0.0.1".parse().unwrap()), &[]));
        assert!(view.allows_ip(Some("127.0.0.1".parse().unwrap()), &["127.0.0.1".parse().unwrap()]));
        assert_eq!(view.allowlist_hosts(), [Hostname::new("localhost").unwrap()]);

        let bare = VerifiableKey::new(sample_key(now), IpPolicy::AllowlistRequired);
        assert!(bare.extras.is_none(), "a key without optional attributes boxes nothing");
        assert!(bare.metadata_json().is_none());
        assert!(!bare.allows_ip(Some("10.9.9.9".parse().unwrap()), &[]), "the keyspace's policy applies");
    }

    #[test]
    fn resource_binding_is_type_colon_id() {
        assert!(ResourceBinding::new("server:srv_42").is_ok());
        assert!(ResourceBinding::new("server").is_err());
        assert!(ResourceBinding::new(":x").is_err());
        assert!(ResourceBinding::new("a:b c").is_err());
    }
}
