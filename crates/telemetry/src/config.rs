//! What to export, read from the standard `OTEL_*` environment variables.

use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;

use crate::{
    client::UreqClient,
    sampling::{Ratio, SamplerError},
};

/// Which signals leave the process over OTLP.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportConfig {
    pub traces: bool,
    pub metrics: bool,
    /// The share of traces kept (`OTEL_TRACES_SAMPLER`), decided before spans are made.
    pub sampling: Ratio,
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self { traces: false, metrics: false, sampling: Ratio::ALL }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(
        "OTEL_EXPORTER_OTLP_PROTOCOL={0} is not supported: Keyward exports OTLP over HTTP with protobuf (http/protobuf)"
    )]
    Protocol(String),
    #[error("cannot set up OpenTelemetry: {0}")]
    Setup(String),
    #[error(transparent)]
    Sampler(#[from] SamplerError),
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

impl ExportConfig {
    /// A signal is exported when an OTLP endpoint is set for it (its own or the common
    /// one) and neither `OTEL_SDK_DISABLED=true` nor `OTEL_<SIGNAL>_EXPORTER=none` says
    /// otherwise.
    pub fn from_env() -> Result<Self, TelemetryError> {
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(Self::default());
        }
        for name in
            ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"]
        {
            if let Some(protocol) = var(name)
                && protocol != "http/protobuf"
            {
                return Err(TelemetryError::Protocol(protocol));
            }
        }
        let common = var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
        let wanted = |signal: &str| {
            let exporter = var(&format!("OTEL_{signal}_EXPORTER"));
            let endpoint = common || var(&format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")).is_some();
            endpoint && exporter.is_none_or(|e| e != "none")
        };
        let sampling =
            Ratio::from_env(var("OTEL_TRACES_SAMPLER").as_deref(), var("OTEL_TRACES_SAMPLER_ARG").as_deref())?;
        Ok(Self { traces: wanted("TRACES"), metrics: wanted("METRICS"), sampling })
    }
}

/// `service.name` from `OTEL_SERVICE_NAME` (or `OTEL_RESOURCE_ATTRIBUTES`), `keyward`
/// otherwise, and the version.
pub(crate) fn resource() -> Resource {
    let mut builder =
        Resource::builder().with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    let named = var("OTEL_SERVICE_NAME").is_some()
        || var("OTEL_RESOURCE_ATTRIBUTES")
            .is_some_and(|a| a.split(',').any(|kv| kv.trim_start().starts_with("service.name=")));
    if !named {
        builder = builder.with_service_name("keyward");
    }
    builder.build()
}

pub(crate) fn span_exporter() -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_http_client(UreqClient::new())
        .build()
        .map_err(|e| TelemetryError::Setup(e.to_string()))
}

pub(crate) fn metric_exporter() -> Result<opentelemetry_otlp::MetricExporter, TelemetryError> {
    opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_http_client(UreqClient::new())
        .build()
        .map_err(|e| TelemetryError::Setup(e.to_string()))
}
