//! Login throttling: at most 5 failed logins per 15 minutes per email and 10 attempts per
//! minute per IP. It counts failures for every email presented, existing or not, so a
//! lockout says nothing about which accounts exist. In memory, per instance; issue #4 moves
//! it onto the shared rate limiter.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    sync::Mutex,
};

use time::{Duration, OffsetDateTime};

/// The limits; all configurable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginLimits {
    pub failures_per_email: usize,
    pub failure_window_seconds: i64,
    pub attempts_per_ip: usize,
    pub attempt_window_seconds: i64,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self { failures_per_email: 5, failure_window_seconds: 15 * 60, attempts_per_ip: 10, attempt_window_seconds: 60 }
    }
}

/// How long to wait before trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

/// Entries kept before idle ones are swept, bounding memory under a spray of emails.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug, Default)]
struct Windows {
    by_email: HashMap<String, VecDeque<OffsetDateTime>>,
    by_ip: HashMap<IpAddr, VecDeque<OffsetDateTime>>,
}

#[derive(Debug, Default)]
pub struct LoginThrottle {
    limits: LoginLimits,
    windows: Mutex<Windows>,
}

fn prune(times: &mut VecDeque<OffsetDateTime>, since: OffsetDateTime) {
    while times.front().is_some_and(|t| *t <= since) {
        times.pop_front();
    }
}

fn retry_after(oldest: OffsetDateTime, window: Duration, now: OffsetDateTime) -> RetryAfter {
    let seconds = (oldest + window - now).whole_seconds().max(1);
    RetryAfter(u64::try_from(seconds).unwrap_or(1))
}

impl LoginThrottle {
    pub fn new(limits: LoginLimits) -> Self {
        Self { limits, windows: Mutex::new(Windows::default()) }
    }

    fn key(email: &str) -> String {
        email.trim().to_lowercase()
    }

    /// Counts an attempt from `ip` and refuses it when the IP or the email is over its limit.
    pub fn attempt(&self, ip: Option<IpAddr>, email: &str, now: OffsetDateTime) -> Result<(), RetryAfter> {
        let ip_window = Duration::seconds(self.limits.attempt_window_seconds);
        let email_window = Duration::seconds(self.limits.failure_window_seconds);
        let mut windows = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if windows.by_ip.len() + windows.by_email.len() > SWEEP_ABOVE {
            windows.by_ip.retain(|_, t| t.back().is_some_and(|last| *last > now - ip_window));
            windows.by_email.retain(|_, t| t.back().is_some_and(|last| *last > now - email_window));
        }
        if let Some(failures) = windows.by_email.get_mut(&Self::key(email)) {
            prune(failures, now - email_window);
            if failures.len() >= self.limits.failures_per_email
                && let Some(oldest) = failures.front()
            {
                return Err(retry_after(*oldest, email_window, now));
            }
        }
        if let Some(ip) = ip {
            let attempts = windows.by_ip.entry(ip).or_default();
            prune(attempts, now - ip_window);
            if attempts.len() >= self.limits.attempts_per_ip
                && let Some(oldest) = attempts.front()
            {
                return Err(retry_after(*oldest, ip_window, now));
            }
            attempts.push_back(now);
        }
        Ok(())
    }

    pub fn failed(&self, email: &str, now: OffsetDateTime) {
        let mut windows = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        windows.by_email.entry(Self::key(email)).or_default().push_back(now);
    }

    pub fn succeeded(&self, email: &str) {
        let mut windows = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        windows.by_email.remove(&Self::key(email));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_the_email_for_the_rest_of_the_window() {
        let throttle = LoginThrottle::new(LoginLimits::default());
        let t0 = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        for i in 0..5 {
            let ip = Some(IpAddr::from([10, 0, 0, i]));
            assert!(throttle.attempt(ip, "Ada@x.io", t0).is_ok());
            throttle.failed("ada@x.io", t0);
        }
        assert_eq!(
            throttle.attempt(Some(IpAddr::from([10, 0, 1, 1])), "ada@x.io", t0 + Duration::minutes(1)),
            Err(RetryAfter(14 * 60))
        );
        assert!(throttle.attempt(None, "ada@x.io", t0 + Duration::minutes(15)).is_ok());
    }

    #[test]
    fn ten_attempts_per_minute_per_ip() {
        let throttle = LoginThrottle::new(LoginLimits::default());
        let t0 = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        let ip = Some(IpAddr::from([192, 0, 2, 1]));
        for i in 0..10 {
            assert!(throttle.attempt(ip, &format!("u{i}@x.io"), t0).is_ok());
        }
        assert_eq!(throttle.attempt(ip, "other@x.io", t0 + Duration::seconds(20)), Err(RetryAfter(40)));
        assert!(throttle.attempt(ip, "other@x.io", t0 + Duration::seconds(60)).is_ok());
    }
}
