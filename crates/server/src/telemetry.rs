//! The binary's telemetry: the log and OpenTelemetry layers of `tracing`, and the
//! instruments only the binary can read (the pool, the key cache, Redis fallbacks, the
//! usage flush's duration).

use std::sync::Arc;

use keyward_ratelimit::Limits;
use keyward_store_pg::PgStore;
use keyward_telemetry::{SPAN_TARGET, Telemetry};
use tracing_subscriber::{Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _};

use crate::config::LogFormat;

/// Installs the log (to standard error) and, when `OTEL_EXPORTER_OTLP_ENDPOINT` says so,
/// the OpenTelemetry exporters. A bad `OTEL_*` setting is reported and exports nothing:
/// telemetry never keeps the service from starting.
pub(crate) fn init(format: LogFormat) -> Telemetry {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYWARD_LOG")
        // The Redis client logs each failed reconnection to a cluster node (one a second);
        // Keyward's own warning says the same at most once a minute.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,actix_server=warn,redis=error"))
        // The spans meant for traces are not log lines.
        .add_directive(format!("{SPAN_TARGET}=off").parse().unwrap_or_else(|_| unreachable!("a valid directive")));
    let (telemetry, problem) = match Telemetry::from_env() {
        Ok(telemetry) => (telemetry, None),
        Err(error) => (Telemetry::local(), Some(error)),
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Json => fmt.json().flatten_event(true).with_filter(filter).boxed(),
        LogFormat::Pretty => fmt.with_filter(filter).boxed(),
    };
    tracing_subscriber::registry().with(fmt).with(telemetry.tracing_layer()).init();
    if let Some(error) = problem {
        tracing::warn!(%error, "OpenTelemetry is off");
    } else if telemetry.exports_traces() {
        tracing::info!("exporting traces and metrics over OTLP");
    }
    telemetry
}

/// The pool's and the key cache's state, read when metrics are collected.
pub(crate) fn observe_store(telemetry: &Telemetry, store: &PgStore) {
    let pool = |name, help, read: fn(&keyward_store_pg::StoreStats) -> u64| {
        let store = store.clone();
        telemetry.observe_gauge(name, help, move || read(&store.stats()));
    };
    pool("keyward.db.pool.max", "Connections the PostgreSQL pool may open.", |s| s.pool_max);
    pool("keyward.db.pool.open", "Connections the PostgreSQL pool has open.", |s| s.pool_open);
    pool("keyward.db.pool.in_use", "Connections of the pool in use now.", |s| s.pool_open.saturating_sub(s.pool_idle));
    pool("keyward.db.pool.waiting", "Tasks waiting for a connection of the pool now.", |s| s.pool_waiting);
    if store.stats().cache.is_none() {
        return;
    }
    // Registered only with a cache, so its stats are always there.
    let cache = |name, help, read: fn(&keyward_store_pg::CacheStats) -> u64| {
        let store = store.clone();
        telemetry.observe_counter(name, help, move || store.stats().cache.map_or(0, |c| read(&c)));
    };
    cache("keyward.cache.hits", "Key lookups the verification cache answered.", |c| c.hits);
    cache("keyward.cache.misses", "Key lookups the verification cache could not answer.", |c| c.misses);
    cache("keyward.cache.loads", "Key lookups that reached PostgreSQL (concurrent misses of a key share one).", |c| {
        c.loads
    });
    cache("keyward.cache.evictions", "Cache entries let go of for room or age.", |c| c.evicted);
    cache(
        "keyward.cache.invalidations",
        "Cache entries dropped because their key changed (here or on another instance), and whole-cache flushes.",
        |c| c.invalidations,
    );
}

/// Decisions made in this process because Redis could not be reached.
pub(crate) fn observe_limits(telemetry: &Telemetry, limits: &Arc<Limits>) {
    if limits.redis_fallbacks().is_none() {
        return;
    }
    let limits = limits.clone();
    telemetry.observe_counter(
        "keyward.limiter.redis.fallbacks",
        "Limit and quota decisions made in this process because Redis could not be reached.",
        move || limits.redis_fallbacks().unwrap_or(0),
    );
}

/// Records each scheduled usage flush's duration.
pub(crate) fn flush_observer(telemetry: &Telemetry) -> impl Fn(std::time::Duration) + Send + 'static {
    let histogram = telemetry
        .meter()
        .f64_histogram("keyward.usage.flush.duration")
        .with_unit("s")
        .with_description("How long each usage flush took (one batch write).")
        .with_boundaries(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
        .build();
    move |took| histogram.record(took.as_secs_f64(), &[])
}
