//! Scopes: `resource:action` strings, deny by default. `resource:*` grants every action of
//! a module, `*` grants everything.

use std::{collections::BTreeSet, fmt, sync::Arc};

pub const MAX_SCOPES: usize = 100;
const MAX_SCOPE_LEN: usize = 128;

/// The management scopes, which guard the management API itself.
pub mod management {
    pub const KEYS_READ: &str = "keys:read";
    pub const KEYS_WRITE: &str = "keys:write";
    pub const KEYS_VERIFY: &str = "keys:verify";
    pub const KEYSPACES_READ: &str = "keyspaces:read";
    pub const KEYSPACES_WRITE: &str = "keyspaces:write";
    pub const AUDIT_READ: &str = "audit:read";
    pub const USAGE_READ: &str = "usage:read";
    pub const USERS_READ: &str = "users:read";
    pub const WEBHOOKS_READ: &str = "webhooks:read";
    pub const WEBHOOKS_WRITE: &str = "webhooks:write";

    pub const ALL: [&str; 10] = [
        KEYS_READ,
        KEYS_WRITE,
        KEYS_VERIFY,
        KEYSPACES_READ,
        KEYSPACES_WRITE,
        AUDIT_READ,
        USAGE_READ,
        USERS_READ,
        WEBHOOKS_READ,
        WEBHOOKS_WRITE,
    ];
}

// `Box<str>`, not `String`: every cached key holds its scopes, and the capacity word and
// slack of a `String` are paid a million times over (docs/performance.md).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Scope(Box<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a scope is \"*\", \"resource:*\" or \"resource:action\" of letters, digits, _ . -, at most 128 characters")]
pub struct InvalidScope;

fn is_segment(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl Scope {
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidScope> {
        let value = value.into();
        if value.len() > MAX_SCOPE_LEN {
            return Err(InvalidScope);
        }
        let valid = value == "*"
            || value
                .split_once(':')
                .is_some_and(|(resource, action)| is_segment(resource) && (action == "*" || is_segment(action)));
        if valid { Ok(Self(value.into_boxed_str())) } else { Err(InvalidScope) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether holding `self` permits what `required` names.
    pub fn grants(&self, required: &Scope) -> bool {
        held_grants(&self.0, &required.0)
    }
}

/// The grant rule on plain text, so that checking a constant needs no allocation.
fn held_grants(held: &str, required: &str) -> bool {
    if held == "*" || held == required {
        return true;
    }
    match (held.split_once(':'), required.split_once(':')) {
        (Some((resource, "*")), Some((required_resource, _))) => resource == required_resource,
        _ => false,
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The scopes a key holds, sorted and without duplicates. Empty means no permission at all.
///
/// One shared slice: a cached key and every `Principal` made from it share the same scopes
/// (a clone is a reference count), and a set costs one allocation plus one per scope
/// instead of a B-tree node sized for eleven.
#[derive(Clone, PartialEq, Eq)]
pub struct ScopeSet(Arc<[Scope]>);

impl Default for ScopeSet {
    fn default() -> Self {
        Self(Arc::from([]))
    }
}

impl serde::Serialize for ScopeSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidScopeSet {
    #[error("at most {MAX_SCOPES} scopes")]
    TooMany,
    /// The position of the first invalid scope. Never the value: a client that pastes a
    /// key into `scopes` must not see it echoed back (or logged).
    #[error("entry {0} is not a valid scope: {InvalidScope}")]
    Invalid(usize),
}

impl ScopeSet {
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Result<Self, InvalidScopeSet> {
        if values.len() > MAX_SCOPES {
            return Err(InvalidScopeSet::TooMany);
        }
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Scope::new(v.as_ref()).map_err(|_| InvalidScopeSet::Invalid(i)))
            .collect::<Result<BTreeSet<_>, _>>()
            .map(Self::from_sorted)
    }

    pub fn from_scopes(scopes: impl IntoIterator<Item = Scope>) -> Self {
        Self::from_sorted(scopes.into_iter().collect())
    }

    fn from_sorted(scopes: BTreeSet<Scope>) -> Self {
        Self(scopes.into_iter().collect())
    }

    /// Every management scope; what the operator's first account key holds.
    pub fn all_management() -> Self {
        Self::from_scopes(management::ALL.iter().map(|s| Scope((*s).into())))
    }

    pub fn grants(&self, required: &Scope) -> bool {
        self.0.iter().any(|held| held.grants(required))
    }

    /// Like [`ScopeSet::grants`] for a scope given as text: the management scopes, which
    /// are constants, checked on every management call without allocating.
    pub fn grants_str(&self, required: &str) -> bool {
        self.0.iter().any(|held| held_grants(&held.0, required))
    }

    pub fn grants_all<'a>(&self, required: impl IntoIterator<Item = &'a Scope>) -> bool {
        required.into_iter().all(|r| self.grants(r))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    pub fn as_slice(&self) -> &[Scope] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Scope {
        Scope::new(v).unwrap()
    }

    #[test]
    fn wildcards_grant_what_they_should_and_no_more() {
        assert!(s("*").grants(&s("server:list")));
        assert!(s("server:*").grants(&s("server:list")));
        assert!(s("server:*").grants(&s("server:*")));
        assert!(!s("server:*").grants(&s("ip:setptr")));
        assert!(!s("server:list").grants(&s("server:*")));
        assert!(!s("server:list").grants(&s("server:delete")));
        assert!(!s("serv:*").grants(&s("server:list")));
        assert!(s("keys:read").grants(&s("keys:read")));
    }

    #[test]
    fn empty_set_denies_everything() {
        assert!(!ScopeSet::default().grants(&s("keys:read")));
        assert!(!ScopeSet::default().grants_str("keys:read"));
    }

    #[test]
    fn sets_are_sorted_and_deduplicated_and_text_grants_match() {
        let set = ScopeSet::parse(&["server:list", "dns:*", "server:list"]).unwrap();
        assert_eq!(set.iter().map(Scope::as_str).collect::<Vec<_>>(), ["dns:*", "server:list"]);
        assert!(set.grants_str("dns:read"));
        assert!(set.grants_str("server:list"));
        assert!(!set.grants_str("server:delete"));
        assert_eq!(serde_json::to_string(&set).unwrap(), r#"["dns:*","server:list"]"#);
    }

    #[test]
    fn invalid_scopes_are_rejected() {
        for bad in ["", "keys", ":read", "keys:", "keys:read:extra", "*:read", "a b:c", &"x".repeat(200)] {
            assert!(Scope::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(ScopeSet::parse(&["ok:x", "bad"]), Err(InvalidScopeSet::Invalid(1)));
        let secret = "kw_live_2MnWFVGFulYfDYYofw9tWlVJNJrXgb1tl35W";
        let error = ScopeSet::parse(&[secret]).unwrap_err();
        assert!(!error.to_string().contains(secret) && !format!("{error:?}").contains(secret), "{error}");
    }
}
