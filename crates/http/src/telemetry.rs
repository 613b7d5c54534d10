//! The HTTP layer's instruments: requests by route and status with their latency, the
//! verifications' outcomes, the limiters' decisions; and the usage meter's counters read
//! at collection time. Made from the process's [`Telemetry`] (the binary's) or a private
//! one (tests, embedders that export nothing).

use std::sync::{Arc, atomic::AtomicU64, atomic::Ordering};

use actix_web::http::Method;
use keyward_domain::{VerifyCode, meter::UsageMeter};
use keyward_telemetry::Telemetry;
use opentelemetry::{
    KeyValue,
    metrics::{Counter, Histogram},
};

/// Latency buckets in seconds: verification answers in tens of microseconds, a login in a
/// quarter second (the password hash).
const LATENCY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Clone)]
pub struct Instruments {
    telemetry: Telemetry,
    request_duration: Histogram<f64>,
    verifications: Counter<u64>,
    limiter_decisions: Counter<u64>,
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
        // Observable instruments live as long as the meter provider: the handles may go.
        let gauge = |name: &'static str, help: &'static str, read: Box<dyn Fn() -> u64 + Send + Sync>| {
            meter
                .u64_observable_gauge(name)
                .with_description(help)
                .with_callback(move |o| o.observe(read(), &[]))
                .build();
        };
        let counter = |name: &'static str, help: &'static str, read: Box<dyn Fn() -> u64 + Send + Sync>| {
            meter
                .u64_observable_counter(name)
                .with_description(help)
                .with_callback(move |o| o.observe(read(), &[]))
                .build();
        };
        let m = usage.clone();
        gauge(
            "keyward.usage.records.buffered",
            "Usage records in memory, waiting for the next flush.",
            Box::new(move || m.buffered() as u64),
        );
        let m = usage.clone();
        gauge(
            "keyward.usage.buffer.capacity",
            "Usage records the buffer holds before it drops them.",
            Box::new(move || m.capacity() as u64),
        );
        let m = usage.clone();
        counter(
            "keyward.usage.records.dropped",
            "Usage records dropped because the buffer was full (or had no room when a failed flush gave them back).",
            Box::new(move || m.dropped()),
        );
        let m = usage.clone();
        counter("keyward.usage.records.written", "Usage records written to storage.", Box::new(move || m.written()));
        let m = usage.clone();
        counter(
            "keyward.usage.flush.failures",
            "Usage flushes that failed (their records are kept for the next one).",
            Box::new(move || m.failed_flushes()),
        );
        let m = usage.clone();
        counter(
            "keyward.usage.records.rejected",
            "Usage records storage refused on their own; dropped while the rest of their batch was written.",
            Box::new(move || m.rejected()),
        );
        let refusals = anonymous_refusals.clone();
        counter(
            "keyward.http.anonymous_refusals",
            "Management requests refused before anybody was known (401, 404, 405, bad bodies, the per-IP limit); not audited.",
            Box::new(move || refusals.load(Ordering::Relaxed)),
        );
        Self {
            request_duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("Requests by route, method and status, and how long Keyward took to answer them.")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build(),
            verifications: meter
                .u64_counter("keyward.verifications")
                .with_description("Verifications by outcome code.")
                .build(),
            limiter_decisions: meter
                .u64_counter("keyward.limiter.decisions")
                .with_description(
                    "Rate-limit and quota decisions of verifications that passed every other check: admitted, RATE_LIMITED or QUOTA_EXHAUSTED.",
                )
                .build(),
            telemetry,
        }
    }

    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// `route` is the route's template (`/v1/keys/{id}`), never the path: a path holds ids,
    /// and every distinct one would be a series of its own.
    pub(crate) fn request(&self, method: &Method, route: Option<Route>, status: u16, seconds: f64) {
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
        let outcome = KeyValue::new("outcome", code.as_str());
        self.verifications.add(1, std::slice::from_ref(&outcome));
        if matches!(code, VerifyCode::Valid | VerifyCode::RateLimited | VerifyCode::QuotaExhausted) {
            let decision = if code == VerifyCode::Valid { "admitted" } else { code.as_str() };
            self.limiter_decisions.add(1, &[KeyValue::new("decision", decision)]);
        }
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
