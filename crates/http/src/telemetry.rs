//! The HTTP layer's instruments: requests by route and status with their latency, the
//! verifications' outcomes, the limiters' decisions; and the usage meter's counters read
//! at collection time. Made from the process's [`Telemetry`] (the binary's) or a private
//! one (tests, embedders that export nothing).

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use actix_web::http::Method;
use keyward_domain::{VerifyCode, meter::UsageMeter};
use keyward_telemetry::Telemetry;
use opentelemetry::{
    KeyValue,
    metrics::{BoundHistogram, Histogram},
};

/// The hot path's route.
const VERIFY_ROUTE: &str = "/v1/keys/verify";

/// Latency buckets in seconds: verification answers in tens of microseconds, a login in a
/// quarter second (the password hash).
const LATENCY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Clone)]
pub struct Instruments {
    telemetry: Telemetry,
    request_duration: Histogram<f64>,
    /// The series of answered verifications (`POST /v1/keys/verify`, 200), bound once: the
    /// hot path's record skips the attribute lookup.
    verified: BoundHistogram<f64>,
    /// Verifications by outcome: one relaxed add each, read when metrics are collected (an
    /// OpenTelemetry counter would hash its attributes on every verification).
    outcomes: Arc<Outcomes>,
}

/// Every verification outcome, in the order of [`VerifyCode`]'s variants.
const OUTCOMES: [VerifyCode; 11] = [
    VerifyCode::Valid,
    VerifyCode::NotFound,
    VerifyCode::Revoked,
    VerifyCode::Expired,
    VerifyCode::Inactive,
    VerifyCode::IpNotAllowed,
    VerifyCode::WrongResource,
    VerifyCode::InsufficientScope,
    VerifyCode::RateLimited,
    VerifyCode::QuotaExhausted,
    VerifyCode::RouteNotAllowed,
];

#[derive(Default)]
struct Outcomes([AtomicU64; OUTCOMES.len()]);

impl Outcomes {
    fn slot(&self, code: VerifyCode) -> &AtomicU64 {
        // Exhaustive: a new outcome does not compile until it has a slot.
        let index = match code {
            VerifyCode::Valid => 0,
            VerifyCode::NotFound => 1,
            VerifyCode::Revoked => 2,
            VerifyCode::Expired => 3,
            VerifyCode::Inactive => 4,
            VerifyCode::IpNotAllowed => 5,
            VerifyCode::WrongResource => 6,
            VerifyCode::InsufficientScope => 7,
            VerifyCode::RateLimited => 8,
            VerifyCode::QuotaExhausted => 9,
            VerifyCode::RouteNotAllowed => 10,
        };
        &self.0[index]
    }

    fn count(&self, code: VerifyCode) -> u64 {
        self.slot(code).load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Instruments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instruments").field("telemetry", &self.telemetry).finish_non_exhaustive()
    }
}

impl Instruments {
    /// Registers the instruments, and the callbacks that read `meter` and
    /// `anonymous_refusals` whenever the metrics are collected.
    pub fn register(telemetry: Telemetry, usage: &Arc<UsageMeter>, anonymous_refusals: &Arc<AtomicU64>) -> Self {
        let meter = telemetry.meter();
        let usage_gauge = |name, help, read: fn(&UsageMeter) -> u64| {
            let usage = usage.clone();
            telemetry.observe_gauge(name, help, move || read(&usage));
        };
        usage_gauge("keyward.usage.records.buffered", "Usage records in memory, waiting for the next flush.", |m| {
            m.buffered() as u64
        });
        usage_gauge("keyward.usage.buffer.capacity", "Usage records the buffer holds before it drops them.", |m| {
            m.capacity() as u64
        });
        let usage_counter = |name, help, read: fn(&UsageMeter) -> u64| {
            let usage = usage.clone();
            telemetry.observe_counter(name, help, move || read(&usage));
        };
        usage_counter(
            "keyward.usage.records.dropped",
            "Usage records dropped because the buffer was full (or had no room when a failed flush gave them back).",
            UsageMeter::dropped,
        );
        usage_counter("keyward.usage.records.written", "Usage records written to storage.", UsageMeter::written);
        usage_counter(
            "keyward.usage.flush.failures",
            "Usage flushes that failed (their records are kept for the next one).",
            UsageMeter::failed_flushes,
        );
        usage_counter(
            "keyward.usage.records.rejected",
            "Usage records storage refused on their own; dropped while the rest of their batch was written.",
            UsageMeter::rejected,
        );
        let refusals = anonymous_refusals.clone();
        telemetry.observe_counter(
            "keyward.http.anonymous_refusals",
            "Management requests refused before anybody was known (401, 404, 405, bad bodies, the per-IP limit); not audited.",
            move || refusals.load(Ordering::Relaxed),
        );
        let outcomes = Arc::new(Outcomes::default());
        let counts = outcomes.clone();
        meter
            .u64_observable_counter("keyward.verifications")
            .with_description("Verifications by outcome code.")
            .with_callback(move |o| {
                for code in OUTCOMES {
                    o.observe(counts.count(code), &[KeyValue::new("outcome", code.as_str())]);
                }
            })
            .build();
        let counts = outcomes.clone();
        meter
            .u64_observable_counter("keyward.limiter.decisions")
            .with_description(
                "Rate-limit and quota decisions of verifications that passed every other check: admitted, RATE_LIMITED or QUOTA_EXHAUSTED.",
            )
            .with_callback(move |o| {
                o.observe(counts.count(VerifyCode::Valid), &[KeyValue::new("decision", "admitted")]);
                for code in [VerifyCode::RateLimited, VerifyCode::QuotaExhausted] {
                    o.observe(counts.count(code), &[KeyValue::new("decision", code.as_str())]);
                }
            })
            .build();
        let request_duration = meter
            .f64_histogram("http.server.request.duration")
            .with_unit("s")
            .with_description("Requests by route, method and status, and how long Keyward took to answer them.")
            .with_boundaries(LATENCY_BUCKETS.to_vec())
            .build();
        let verified = request_duration.bind(&[
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("http.route", VERIFY_ROUTE),
            KeyValue::new("http.response.status_code", 200_i64),
        ]);
        Self { outcomes, request_duration, verified, telemetry }
    }

    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// `route` is the route's template (`/v1/keys/{id}`), never the path: a path holds ids,
    /// and every distinct one would be a series of its own.
    pub(crate) fn request(&self, method: &Method, route: Option<Route>, status: u16, seconds: f64) {
        if status == 200 && method == Method::POST && route.as_ref().is_some_and(|r| r.as_str() == VERIFY_ROUTE) {
            return self.verified.record(seconds);
        }
        let method = KeyValue::new("http.request.method", method_name(method));
        let status = KeyValue::new("http.response.status_code", i64::from(status));
        match route {
            Some(route) => {
                self.request_duration.record(seconds, &[method, KeyValue::new("http.route", route.0), status])
            }
            None => self.request_duration.record(seconds, &[method, status]),
        }
    }

    pub(crate) fn verification(&self, code: VerifyCode) {
        self.outcomes.slot(code).fetch_add(1, Ordering::Relaxed);
    }
}

/// A request's path as the access log writes it: the token of a link (an invitation's, a
/// password reset's) is a secret that travels in the path, so it is written as `[token]`.
pub(crate) struct LoggedPath<'a>(pub(crate) &'a str);

/// Path segments after which the next one is a link's token.
const TOKEN_PARENTS: [&str; 2] = ["invitations", "password-reset"];

impl std::fmt::Display for LoggedPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut secret_next = false;
        for (i, segment) in self.0.split('/').enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            if secret_next && !segment.is_empty() {
                f.write_str("[token]")?;
            } else {
                f.write_str(segment)?;
            }
            secret_next = TOKEN_PARENTS.contains(&segment);
        }
        Ok(())
    }
}

/// A route template, static for the routes of the route table (no allocation on the hot
/// path), owned for the others (the dashboard's).
pub(crate) struct Route(opentelemetry::StringValue);

impl Route {
    /// The template of the route `req` matched, if any.
    pub(crate) fn of(req: &actix_web::HttpRequest) -> Option<Self> {
        // A static path is its own template: no second match.
        if let Some(spec) = crate::routes::find(req.method(), req.path()) {
            return Some(Self(spec.path.into()));
        }
        let pattern = req.match_pattern()?;
        Some(Self(match crate::routes::find(req.method(), &pattern) {
            Some(spec) => spec.path.into(),
            None => pattern.into(),
        }))
    }

    pub(crate) fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// A request span's name: `{method} {route template}`, or the method alone when no route
/// matched (the semantic conventions' rule).
pub(crate) struct SpanName<'a>(pub(crate) &'a Method, pub(crate) Option<&'a Route>);

impl std::fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1 {
            Some(route) => write!(f, "{} {}", method_name(self.0), route.as_str()),
            None => f.write_str(method_name(self.0)),
        }
    }
}

/// The method as a bounded set: anything unusual is `_OTHER` (the semantic conventions'
/// word), so that made-up methods make no series.
fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "_OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::LoggedPath;

    #[test]
    fn a_links_token_is_not_logged() {
        let token = "4fZ8kQ2vN1xR7mT3pL9sW6yB0cH5jD2gE8aK1uV4nXq";
        for (path, logged) in [
            (format!("/invitations/{token}"), "/invitations/[token]".to_owned()),
            (format!("/v1/invitations/{token}/accept"), "/v1/invitations/[token]/accept".to_owned()),
            (format!("/v1/auth/password-reset/{token}"), "/v1/auth/password-reset/[token]".to_owned()),
            ("/v1/account/invitations".to_owned(), "/v1/account/invitations".to_owned()),
            ("/v1/auth/invitations".to_owned(), "/v1/auth/invitations".to_owned()),
            ("/v1/keys/key_1".to_owned(), "/v1/keys/key_1".to_owned()),
        ] {
            assert_eq!(LoggedPath(&path).to_string(), logged);
        }
    }
}
