//! The HTTP client the OTLP exporters post with: ureq (blocking, already in the build),
//! instead of reqwest and its hyper stack. The SDK's batch span processor and periodic
//! metric reader each run on a thread of their own and drive this future to completion
//! there, so blocking inside it holds up no request.

use std::time::Duration;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

/// What a collector's answer may hold; OTLP answers are a few bytes (a partial-success
/// message at most).
const MAX_RESPONSE: u64 = 64 * 1024;

#[derive(Debug, Clone)]
pub(crate) struct UreqClient {
    agent: ureq::Agent,
}

impl UreqClient {
    pub(crate) fn new() -> Self {
        let agent = ureq::Agent::config_builder()
            // The exporter reads the status itself (and retries on 429/503).
            .http_status_as_error(false)
            // A collector that redirects is misconfigured; following could post telemetry
            // somewhere nobody configured.
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Self { agent }
    }
}

#[async_trait::async_trait]
impl HttpClient for UreqClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = request.map(|body| body.to_vec());
        let response = self.agent.run(request)?;
        let (parts, mut body) = response.into_parts();
        let body = body.with_config().limit(MAX_RESPONSE).read_to_vec()?;
        Ok(Response::from_parts(parts, Bytes::from(body)))
    }
}
