//! A webhook URL is user input that makes Keyward send requests: one that named a private,
//! loopback or link-local address would let an account probe the network Keyward runs in
//! (SSRF). [`WebhookUrl::parse`] refuses such literal addresses and names; the sender
//! checks every address a name resolves to again, at each delivery, with
//! [`is_public`]. An operator whose receivers are on a private network allows them
//! (`[webhooks] allow_private`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("must be an absolute http or https URL of at most {MAX_URL_LEN} characters")]
    Malformed,
    #[error("must not hold a user name or password (put credentials in the receiver, not the URL)")]
    Credentials,
    #[error("must not have a fragment")]
    Fragment,
    #[error("names a private, loopback or link-local address, which this instance does not send to")]
    Private,
}

impl WebhookUrl {
    pub fn parse(text: &str, allow_private: bool) -> Result<Self, UrlError> {
        if text.len() > MAX_URL_LEN || text.trim() != text {
            return Err(UrlError::Malformed);
        }
        let url = url::Url::parse(text).map_err(|_| UrlError::Malformed)?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(UrlError::Malformed);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::Credentials);
        }
        if url.fragment().is_some() {
            return Err(UrlError::Fragment);
        }
        if !allow_private {
            let private = match url.host() {
                Some(url::Host::Ipv4(ip)) => !is_public(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => !is_public(IpAddr::V6(ip)),
                Some(url::Host::Domain(name)) => {
                    let name = name.trim_end_matches('.');
                    name == "localhost" || name.ends_with(".localhost") || name.ends_with(".internal")
                }
                None => true,
            };
            if private {
                return Err(UrlError::Private);
            }
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The host name or literal address, without brackets.
    pub fn host(&self) -> String {
        match self.0.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => String::new(),
        }
    }

    pub fn port(&self) -> u16 {
        self.0.port_or_known_default().unwrap_or(443)
    }
}

impl std::fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `ip` is an address on the public internet: not loopback, private, link-local,
/// shared (CGNAT), unspecified, multicast, broadcast, documentation, benchmarking or
/// reserved, and not an IPv6 form of one of those.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            let special = v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64 64:ff9b::/96 reaches IPv4 inside
                || (s[0] == 0x2002) // 6to4 embeds an IPv4 address
                || v6 == Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0)
                || (s[0..6] == [0, 0, 0, 0, 0, 0]); // IPv4-compatible (deprecated)
            !special
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let special = a == 0 // "this network"
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || ip.is_documentation()
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 224; // multicast, reserved, broadcast
    !special
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_and_link_local_destinations_are_refused() {
        for url in [
            "http://127.0.0.1/hook",
            "http://127.1.2.3:8080/",
            "http://10.0.0.5/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://localhost/",
            "http://api.localhost./",
            "http://metadata.google.internal/",
            "http://2130706433/", // 127.0.0.1 as one number: the URL parser reads it as such
            "http://0x7f.1/",
        ] {
            assert_eq!(WebhookUrl::parse(url, false), Err(UrlError::Private), "{url}");
            assert!(WebhookUrl::parse(url, true).is_ok(), "{url} when private ones are allowed");
        }
    }

    #[test]
    fn public_destinations_are_kept_and_malformed_ones_refused() {
        for url in
            ["https://hooks.example.com/keyward", "http://93.184.216.34:8443/x?y=1", "https://[2606:4700::1111]/"]
        {
            assert_eq!(WebhookUrl::parse(url, false).unwrap().as_str(), url);
        }
        for (url, error) in [
            ("ftp://example.com/", UrlError::Malformed),
            ("example.com/hook", UrlError::Malformed),
            ("https://", UrlError::Malformed),
            (" https://example.com/", UrlError::Malformed),
            ("https://user:pass@example.com/", UrlError::Credentials),
            ("https://example.com/#frag", UrlError::Fragment),
        ] {
            assert_eq!(WebhookUrl::parse(url, false), Err(error), "{url}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(WebhookUrl::parse(&long, false), Err(UrlError::Malformed));
    }
}
