//! `GET /metrics`: the process's operational counters in the Prometheus text format (0.0.4),
//! for a scraper that presents the configured token (`Authorization: Bearer <token>`).
//!
//! Without a token configured the route is not registered (404): the counters say how busy the
//! service is, which is nobody's business on a public listener by default. They are
//! process-wide, so no account key opens them either.
//!
//! Today: the usage meter (buffered, dropped, written, failed flushes). The rest of SPEC §7's
//! metrics (requests, verdicts, cache, limiter, pool) join here or move to OpenTelemetry.

use std::{fmt::Write as _, sync::Arc};

use actix_web::{HttpRequest, HttpResponse, web};
use keyward_domain::ratelimit::Admission;
use keyward_domain::{KeyHash, Store};

use crate::{AppState, error::ApiError, error::ErrorCode};

/// The bearer token a scraper must present, kept as its BLAKE3 digest only: a presented
/// token is compared digest to digest (equal-length inputs whose comparison's timing says
/// nothing useful about the token), and the process holds no copy of the token itself.
#[derive(Clone)]
pub struct MetricsToken(Arc<KeyHash>);

impl MetricsToken {
    pub fn new(token: &str) -> Self {
        Self(Arc::new(KeyHash::blake3(token)))
    }

    fn admits(&self, presented: &str) -> bool {
        KeyHash::blake3(presented) == *self.0
    }
}

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(redacted)")
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations", security(("metrics_token" = [])),
    responses((status = 200, content_type = "text/plain", body = String, description = "Prometheus text format 0.0.4"),
        (status = 401, body = crate::dto::ErrorEnvelope), (status = 404, body = crate::dto::ErrorEnvelope, description = "No metrics token is configured")))]
pub async fn metrics<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    token: web::Data<MetricsToken>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let presented = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if !presented.is_some_and(|presented| token.admits(presented)) {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "the metrics token is required (Authorization: Bearer <token>)",
        ));
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(render(&state.meter, state.anonymous_refusals.load(std::sync::atomic::Ordering::Relaxed))))
}

fn render(meter: &keyward_domain::meter::UsageMeter, anonymous_refusals: u64) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        // Writing to a String cannot fail.
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
    };
    metric(
        "keyward_usage_records_buffered",
        "gauge",
        "Usage records in memory, waiting for the next flush.",
        meter.buffered() as u64,
    );
    metric(
        "keyward_usage_buffer_capacity",
        "gauge",
        "Usage records the buffer holds before it drops them.",
        meter.capacity() as u64,
    );
    metric(
        "keyward_usage_records_dropped_total",
        "counter",
        "Usage records dropped because the buffer was full (or had no room when a failed flush gave them back).",
        meter.dropped(),
    );
    metric("keyward_usage_records_written_total", "counter", "Usage records written to storage.", meter.written());
    metric(
        "keyward_usage_flush_failures_total",
        "counter",
        "Usage flushes that failed (their records are kept for the next one).",
        meter.failed_flushes(),
    );
    metric(
        "keyward_usage_records_rejected_total",
        "counter",
        "Usage records storage refused on their own; dropped while the rest of their batch was written.",
        meter.rejected(),
    );
    metric(
        "keyward_http_anonymous_refusals_total",
        "counter",
        "Management requests refused before anybody was known (401, 404, 405, bad bodies, the per-IP limit); not audited.",
        anonymous_refusals,
    );
    out
}
