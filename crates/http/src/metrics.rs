//! `GET /metrics`: the process's operational counters in the Prometheus text format (0.0.4),
//! for a scraper that presents the configured token (`Authorization: Bearer <token>`).
//!
//! Without a token configured the route is not registered (404): the counters say how busy the
//! service is, which is nobody's business on a public listener by default. They are
//! process-wide, so no account key opens them either.
//!
//! What it shows is what OpenTelemetry exports (see `keyward_telemetry`): the same
//! instruments, read through the Prometheus reader, whether or not OTLP is configured.

use std::sync::Arc;

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
        .body(state.instruments.telemetry().render()))
}
