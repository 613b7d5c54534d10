//! The verification rules, in SPEC §4 order. The checks here are pure: given a key, what was
//! asked of it and the time, they name the first rule that fails.

use std::net::IpAddr;

use time::OffsetDateTime;

use crate::{
    key::{KeyStatus, ResourceBinding, VerifiableKey},
    plan::text_enum,
    scope::Scope,
};

/// The outcome of a verification. The order of the variants is the order of the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VerifyCode {
    Valid,
    NotFound,
    Revoked,
    Expired,
    Inactive,
    IpNotAllowed,
    WrongResource,
    InsufficientScope,
    /// Forward auth only: the keyspace's route table lets no key through to this route.
    RouteNotAllowed,
    RateLimited,
    QuotaExhausted,
}

text_enum!(VerifyCode {
    Valid => "VALID",
    NotFound => "NOT_FOUND",
    Revoked => "REVOKED",
    Expired => "EXPIRED",
    Inactive => "INACTIVE",
    IpNotAllowed => "IP_NOT_ALLOWED",
    WrongResource => "WRONG_RESOURCE",
    InsufficientScope => "INSUFFICIENT_SCOPE",
    RouteNotAllowed => "ROUTE_NOT_ALLOWED",
    RateLimited => "RATE_LIMITED",
    QuotaExhausted => "QUOTA_EXHAUSTED",
});

/// What the caller asks of a key besides its existence.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyRequest<'a> {
    pub scopes: &'a [Scope],
    pub resource: Option<&'a ResourceBinding>,
    /// The IP of the SaaS's customer, as the SaaS saw it.
    pub ip: Option<IpAddr>,
    /// What the host names of the key's allowlist resolve to (empty until they are looked
    /// up: only when the addresses and networks did not admit `ip`).
    pub resolved: &'a [IpAddr],
}

/// Runs the static checks, REVOKED through INSUFFICIENT_SCOPE, on a key that was found.
/// RATE_LIMITED and QUOTA_EXHAUSTED come after these and consume budget, so they are the
/// caller's job and run only when this returns `Valid`.
pub fn check(key: &VerifiableKey, request: &VerifyRequest<'_>, now: OffsetDateTime) -> VerifyCode {
    match key.status(now) {
        KeyStatus::Revoked => return VerifyCode::Revoked,
        KeyStatus::Expired => return VerifyCode::Expired,
        KeyStatus::Inactive => return VerifyCode::Inactive,
        KeyStatus::Active => {}
    }
    if !key.allows_ip(request.ip, request.resolved) {
        return VerifyCode::IpNotAllowed;
    }
    if let Some(bound) = key.resource()
        && request.resource != Some(bound)
    {
        return VerifyCode::WrongResource;
    }
    if !key.scopes.grants_all(request.scopes) {
        return VerifyCode::InsufficientScope;
    }
    VerifyCode::Valid
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;
    use crate::{key::tests_support::sample_key, keyspace::IpPolicy, scope::ScopeSet};

    fn view(key: &crate::key::Key) -> VerifiableKey {
        VerifiableKey::new(key.clone(), IpPolicy::Open)
    }

    #[test]
    fn checks_run_in_spec_order() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        let mut key = sample_key(now);
        key.scopes = ScopeSet::parse(&["server:*"]).unwrap();
        key.resource = Some(ResourceBinding::new("server:srv_42").unwrap());
        key.ip_allowlist.push("10.0.0.0/8").unwrap();
        let wanted = [Scope::new("server:list").unwrap()];
        let resource = ResourceBinding::new("server:srv_42").unwrap();
        let good = VerifyRequest {
            scopes: &wanted,
            resource: Some(&resource),
            ip: Some("10.0.0.1".parse().unwrap()),
            resolved: &[],
        };
        assert_eq!(check(&view(&key), &good, now), VerifyCode::Valid);

        let other_scope = [Scope::new("ip:setptr").unwrap()];
        let mut request = VerifyRequest { scopes: &other_scope, ..good };
        assert_eq!(check(&view(&key), &request, now), VerifyCode::InsufficientScope);
        let other = ResourceBinding::new("server:srv_43").unwrap();
        request.resource = Some(&other);
        assert_eq!(check(&view(&key), &request, now), VerifyCode::WrongResource);
        request.ip = Some("192.168.1.1".parse().unwrap());
        assert_eq!(check(&view(&key), &request, now), VerifyCode::IpNotAllowed);
        key.is_active = false;
        assert_eq!(check(&view(&key), &request, now), VerifyCode::Inactive);
        key.expires_at = Some(now - Duration::seconds(1));
        assert_eq!(check(&view(&key), &request, now), VerifyCode::Expired);
        key.revoked_at = Some(now);
        assert_eq!(check(&view(&key), &request, now), VerifyCode::Revoked);
    }
}
