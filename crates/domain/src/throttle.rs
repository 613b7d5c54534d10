//! Login throttling as data: at most 5 failed logins per 15 minutes per email and 10
//! attempts per minute per IP, both exact (sliding logs) and kept by the `RateLimiter` port,
//! so every instance sharing Redis shares them. Failures are counted for every email
//! presented, existing or not, so a lockout says nothing about which accounts exist.

use std::net::IpAddr;

use crate::ratelimit::{Limit, Rule};

/// The limits; all configurable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginLimits {
    pub failures_per_email: u64,
    pub failure_window_seconds: u64,
    pub attempts_per_ip: u64,
    pub attempt_window_seconds: u64,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self { failures_per_email: 5, failure_window_seconds: 15 * 60, attempts_per_ip: 10, attempt_window_seconds: 60 }
    }
}

impl LoginLimits {
    pub fn per_ip(&self) -> [Rule; 1] {
        [Rule::new(
            "login_ip",
            Limit::Sliding { limit: self.attempts_per_ip, period_seconds: self.attempt_window_seconds },
        )]
    }

    pub fn per_email(&self) -> [Rule; 1] {
        [Rule::new(
            "login_failures",
            Limit::Sliding { limit: self.failures_per_email, period_seconds: self.failure_window_seconds },
        )]
    }
}

/// What per-client limits key a client by: an IPv4 address (or an IPv4-mapped IPv6 one),
/// or an IPv6 address's /64. A /64 is one site's subnet (RFC 6177 hands out a /64 or more
/// per site), and its holder can rotate through 2^64 addresses at will: keyed by /128, no
/// limit would ever hold against them.
pub fn client_subnet(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// The limiter subject of an IP's login attempts: its [`client_subnet`].
pub fn ip_subject(ip: IpAddr) -> Vec<u8> {
    let mut subject = b"login-ip:".to_vec();
    match client_subnet(ip) {
        IpAddr::V4(v4) => subject.extend_from_slice(&v4.octets()),
        IpAddr::V6(v6) => subject.extend_from_slice(&v6.octets()),
    }
    subject
}

/// The limiter subject of an email's failed logins (normalised like `Email`).
pub fn email_subject(email: &str) -> Vec<u8> {
    let mut subject = b"login-email:".to_vec();
    subject.extend_from_slice(email.trim().to_lowercase().as_bytes());
    subject
}
