//! IP allowlists: addresses, networks and host names, and when one list is within another.

use super::*;

/// A host name in an IP allowlist (`office.example.com`, `localhost`): letters, digits and
/// hyphens in dot-separated labels of at most 63 characters, 253 in all, kept in lowercase.
/// It admits the addresses it resolves to at verification time (through the
/// [`HostResolver`](crate::ports::HostResolver) port, with a short cache).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hostname(Box<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be an IPv4 or IPv6 address, a CIDR network or a host name")]
pub struct InvalidAllowlistEntry;

impl Hostname {
    pub fn new(value: &str) -> Result<Self, InvalidAllowlistEntry> {
        let name = value.strip_suffix('.').unwrap_or(value).to_ascii_lowercase();
        let label_ok = |label: &str| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        // The last label of a name is never all digits (RFC 3696 §2), which also keeps
        // malformed addresses ("10.0.0.256") from passing as names.
        let tld_ok = name.rsplit('.').next().is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()));
        if name.len() <= 253 && name.split('.').all(label_ok) && tld_ok {
            Ok(Self(name.into_boxed_str()))
        } else {
            Err(InvalidAllowlistEntry)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a key may be used from: addresses and networks, and host names standing for the
/// addresses they resolve to. Empty: no allowlist (the keyspace's `ip_policy` decides).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpAllowlist {
    pub nets: Vec<IpNet>,
    pub hosts: Vec<Hostname>,
}

impl IpAllowlist {
    /// One entry as a client writes it: an address, a CIDR network (its host bits
    /// cleared) or a host name.
    pub fn push(&mut self, entry: &str) -> Result<(), InvalidAllowlistEntry> {
        if let Ok(net) = entry.parse::<IpNet>().or_else(|_| entry.parse::<IpAddr>().map(IpNet::from)) {
            self.nets.push(net.trunc());
        } else {
            self.hosts.push(Hostname::new(entry)?);
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty() && self.hosts.is_empty()
    }

    pub fn len(&self) -> usize {
        self.nets.len() + self.hosts.len()
    }

    /// Whether `self` admits only addresses `other` admits too: every network of `self`
    /// inside one of `other`'s, every host name also in `other`. An empty list admits
    /// everything, so it is within nothing but another empty list (and every list is
    /// within it).
    pub fn is_within(&self, other: &Self) -> bool {
        if other.is_empty() {
            return true;
        }
        !self.is_empty()
            && self.nets.iter().all(|net| other.nets.iter().any(|outer| outer.contains(net)))
            && self.hosts.iter().all(|host| other.hosts.contains(host))
    }

    /// Every entry as text: the networks, then the host names.
    pub fn entries(&self) -> impl Iterator<Item = String> + '_ {
        self.nets.iter().map(ToString::to_string).chain(self.hosts.iter().map(ToString::to_string))
    }
}
