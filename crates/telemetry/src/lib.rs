//! Keyward's telemetry: one set of OpenTelemetry instruments, read two ways.
//!
//! - **`GET /metrics`** renders them in the Prometheus text format through the Prometheus
//!   reader ([`Telemetry::render`]); it is always there, whether or not anything is exported.
//! - **OTLP over HTTP/protobuf** exports them, with the spans of every request, when the
//!   standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or a signal's own `…_TRACES_ENDPOINT` /
//!   `…_METRICS_ENDPOINT`) is set. Off by default. `OTEL_SERVICE_NAME`,
//!   `OTEL_TRACES_SAMPLER`(`_ARG`), `OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_BSP_*` and
//!   `OTEL_SDK_DISABLED` mean what the specification says; the SDK reads them.
//!
//! Spans come from `tracing`: the ones meant for traces use the target [`SPAN_TARGET`], which
//! the OpenTelemetry layer takes and the log layer leaves out. With nothing exported no
//! layer wants them, and a disabled span costs a branch.

mod client;
mod config;
mod sampling;

use std::sync::Arc;

use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;

pub use config::{ExportConfig, TelemetryError};
pub use sampling::{Ratio, SamplerError};

/// The `tracing` target of the spans that become OpenTelemetry spans.
pub const SPAN_TARGET: &str = "keyward::otel";

/// The name of the meter and tracer every Keyward instrument belongs to.
const SCOPE: &str = "keyward";

/// The process's meter provider (with its Prometheus registry) and, when traces are
/// exported, its tracer provider. Clones share them.
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

struct Inner {
    meters: SdkMeterProvider,
    tracers: Option<SdkTracerProvider>,
    registry: prometheus::Registry,
    exports_metrics: bool,
    sampling: Ratio,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("exports_traces", &self.inner.tracers.is_some())
            .field("exports_metrics", &self.inner.exports_metrics)
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Metrics for `GET /metrics` only; nothing leaves the process.
    pub fn local() -> Self {
        Self::build(&ExportConfig::default()).unwrap_or_else(|_| unreachable!("nothing to export cannot fail"))
    }

    /// As the `OTEL_*` environment says (see [`ExportConfig::from_env`]).
    pub fn from_env() -> Result<Self, TelemetryError> {
        Self::build(&ExportConfig::from_env()?)
    }

    pub fn build(config: &ExportConfig) -> Result<Self, TelemetryError> {
        let registry = prometheus::Registry::new();
        let prometheus = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            // One scope (keyward) for everything: its labels on every series would be noise.
            .scope_info_enabled(false)
            .build()
            .map_err(|e| TelemetryError::Setup(e.to_string()))?;
        let resource = config::resource();
        let mut meters = SdkMeterProvider::builder().with_reader(prometheus).with_resource(resource.clone());
        if config.metrics {
            meters = meters
                .with_reader(opentelemetry_sdk::metrics::PeriodicReader::builder(config::metric_exporter()?).build());
        }
        let tracers = if config.traces {
            Some(
                SdkTracerProvider::builder()
                    // Sampled already, before the spans were made (see `sampling`).
                    .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
                    .with_batch_exporter(config::span_exporter()?)
                    .with_resource(resource)
                    .build(),
            )
        } else {
            None
        };
        Ok(Self {
            inner: Arc::new(Inner {
                meters: meters.build(),
                tracers,
                registry,
                exports_metrics: config.metrics,
                sampling: config.sampling,
            }),
        })
    }

    /// The meter every instrument of Keyward is made from.
    pub fn meter(&self) -> Meter {
        self.inner.meters.meter(SCOPE)
    }

    /// A gauge whose value `read` gives whenever the metrics are collected (an existing
    /// count, read where it is kept: nothing is recorded on the path that changes it).
    /// It lives as long as the meter provider.
    pub fn observe_gauge(
        &self,
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) {
        self.meter()
            .u64_observable_gauge(name)
            .with_description(help)
            .with_callback(move |o| o.observe(read(), &[]))
            .build();
    }

    /// [`Telemetry::observe_gauge`] for a count that only grows.
    pub fn observe_counter(
        &self,
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) {
        self.meter()
            .u64_observable_counter(name)
            .with_description(help)
            .with_callback(move |o| o.observe(read(), &[]))
            .build();
    }

    /// Whether spans are exported (the request spans are worth making).
    pub fn exports_traces(&self) -> bool {
        self.inner.tracers.is_some()
    }

    /// The layer that turns the spans of [`SPAN_TARGET`] into OpenTelemetry spans, when
    /// traces are exported; only the sampled ones are made at all.
    pub fn tracing_layer<S>(&self) -> Option<impl Layer<S> + Send + Sync + 'static>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span> + Send + Sync,
    {
        let tracer = self.inner.tracers.as_ref()?.tracer(SCOPE);
        Some(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                // Code locations, thread names and targets say nothing an operator needs and
                // cost attributes on every span.
                .with_location(false)
                .with_threads(false)
                .with_target(false)
                .with_level(false)
                .with_tracked_inactivity(false)
                // Nothing reads OpenTelemetry's current context (Keyward calls no service
                // that would carry it on); parents come from the tracing span tree. Activating
                // it on every poll of an instrumented future cost ~4,000 instructions per
                // verification (callgrind).
                .with_context_activation(false)
                .with_filter(sampling::HeadSampler(self.inner.sampling)),
        )
    }

    /// Every instrument's current value in the Prometheus text format (0.0.4).
    pub fn render(&self) -> String {
        use prometheus::Encoder as _;
        let mut out = Vec::new();
        // Encoding what the registry gathered into a Vec cannot fail but for a bug.
        if let Err(error) = prometheus::TextEncoder::new().encode(&self.inner.registry.gather(), &mut out) {
            tracing::error!(%error, "could not render the metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// Exports what is pending (the last spans, a last collection of metrics) and stops the
    /// exporters. Blocks for at most the exporters' timeouts.
    pub fn shutdown(&self) {
        if let Some(tracers) = &self.inner.tracers
            && let Err(error) = tracers.shutdown()
        {
            tracing::warn!(%error, "could not export the last spans");
        }
        if let Err(error) = self.inner.meters.shutdown() {
            tracing::warn!(%error, "could not export the last metrics");
        }
    }
}
