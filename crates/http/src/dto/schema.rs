//! What the OpenAPI document says of values whose Rust types live in the domain (which
//! knows nothing of utoipa): the enums' variants, and the patterns of ids, names, scopes
//! and prefixes. Field attributes name them as `value_type`; a test checks each enum
//! against the domain's own list, so the document cannot drift from what the server
//! parses. Ids are written as patterns in place: a type prefix and 22 base62 characters,
//! the first at most `6` (a 128-bit value; `0` for every id minted before the year
//! 10,000).

use utoipa::ToSchema;

/// The environment a key is for.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum EnvironmentName {
    Live,
    Test,
}

/// A tier: a key's default rate limit.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum TierName {
    Free,
    Basic,
    Pro,
    Enterprise,
}

/// A key's derived status.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum KeyStatusName {
    Active,
    Inactive,
    Expired,
    Revoked,
}

/// What a key without an IP allowlist may do in a keyspace.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum IpPolicyName {
    Open,
    AllowlistRequired,
}

/// What happens to a key of a keyspace that is reported leaked.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum LeakPolicyName {
    Notify,
    Disable,
    Revoke,
}

/// What a webhook message is about.
#[derive(Debug, ToSchema)]
pub enum EventTypeName {
    #[schema(rename = "key.created")]
    KeyCreated,
    #[schema(rename = "key.updated")]
    KeyUpdated,
    #[schema(rename = "key.revoked")]
    KeyRevoked,
    #[schema(rename = "key.rotated")]
    KeyRotated,
    #[schema(rename = "key.leaked")]
    KeyLeaked,
    #[schema(rename = "key.expiring")]
    KeyExpiring,
    #[schema(rename = "quota.low")]
    QuotaLow,
    #[schema(rename = "quota.exhausted")]
    QuotaExhausted,
}

/// A person's role in an account.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum RoleName {
    Viewer,
    Member,
    Admin,
    Owner,
}

/// How an audited call ended.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum AuditResultName {
    Success,
    Failure,
    Denied,
}

/// When a quota's balance is replaced (00:00 UTC).
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum RefillIntervalName {
    Day,
    Month,
}

/// `*`, `resource:*` or `resource:action`.
pub const SCOPE: &str = r"^(\*|[A-Za-z0-9_.-]+:(\*|[A-Za-z0-9_.-]+))$";

/// One scope: `*`, `resource:*` or `resource:action`, at most 128 characters.
#[derive(Debug)]
pub struct ScopeText;

impl utoipa::PartialSchema for ScopeText {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(SCOPE))
            .max_length(Some(128))
            .into()
    }
}

impl ToSchema for ScopeText {}

/// A management scope, as account keys hold them (at most those of the minting person's
/// role; an owner's are all of them). Taken from the domain's list: it cannot drift.
#[derive(Debug)]
pub struct ManagementScopeName;

impl utoipa::PartialSchema for ManagementScopeName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(keyward_domain::scope::management::ALL))
            .into()
    }
}

impl ToSchema for ManagementScopeName {}

/// An IPv4 or IPv6 address.
#[derive(Debug)]
pub struct IpAddressText;

impl utoipa::PartialSchema for IpAddressText {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, schema::Type};
        let address =
            |format| ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(format)));
        OneOfBuilder::new().item(address(KnownFormat::Ipv4)).item(address(KnownFormat::Ipv6)).into()
    }
}

impl ToSchema for IpAddressText {}

#[cfg(test)]
mod tests {
    use keyward_domain::{
        Environment, IpPolicy, KeyStatus, Tier, audit::AuditResult, keyspace::LeakPolicy, people::Role,
        quota::RefillInterval,
    };
    use utoipa::PartialSchema;

    use super::*;

    fn variants<T: PartialSchema>() -> Vec<String> {
        let schema = serde_json::to_value(T::schema()).unwrap_or_default();
        schema["enum"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
    }

    #[test]
    fn the_documented_enums_are_the_domains() {
        let names = |all: &[&str]| all.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(variants::<EnvironmentName>(), names(&[Environment::Live.as_str(), Environment::Test.as_str()]));
        let statuses = [KeyStatus::Active, KeyStatus::Inactive, KeyStatus::Expired, KeyStatus::Revoked];
        assert_eq!(variants::<KeyStatusName>(), statuses.iter().map(|s| s.as_str().to_owned()).collect::<Vec<_>>());
        assert_eq!(variants::<IpPolicyName>(), names(&[IpPolicy::Open.as_str(), IpPolicy::AllowlistRequired.as_str()]));
        let policies = [LeakPolicy::Notify, LeakPolicy::Disable, LeakPolicy::Revoke];
        assert_eq!(variants::<LeakPolicyName>(), policies.iter().map(|p| p.as_str().to_owned()).collect::<Vec<_>>());
        let events = keyward_domain::webhook::EventType::ALL.iter().map(|e| e.as_str().to_owned());
        assert_eq!(variants::<EventTypeName>(), events.collect::<Vec<_>>());
        let roles = [Role::Viewer, Role::Member, Role::Admin, Role::Owner];
        assert_eq!(variants::<RoleName>(), roles.iter().map(|r| r.as_str().to_owned()).collect::<Vec<_>>());
        let results = [AuditResult::Success, AuditResult::Failure, AuditResult::Denied];
        assert_eq!(variants::<AuditResultName>(), results.iter().map(|r| r.as_str().to_owned()).collect::<Vec<_>>());
        let intervals = [RefillInterval::Day, RefillInterval::Month];
        let serialized = intervals
            .iter()
            .map(|i| serde_json::to_value(i).unwrap_or_default().as_str().unwrap_or_default().to_owned());
        assert_eq!(variants::<RefillIntervalName>(), serialized.collect::<Vec<_>>());
        let tiers = [Tier::Free, Tier::Basic, Tier::Pro, Tier::Enterprise];
        assert_eq!(variants::<TierName>(), tiers.iter().map(|t| t.as_str().to_owned()).collect::<Vec<_>>());
        // And each parses back into the domain's type.
        for name in variants::<RoleName>() {
            assert!(name.parse::<Role>().is_ok(), "{name}");
        }
    }
}
