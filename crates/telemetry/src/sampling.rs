//! Head sampling before any span exists.
//!
//! `tracing-opentelemetry` builds every span it is given and lets the SDK's sampler drop
//! it at the end: with `OTEL_TRACES_SAMPLER=always_off` a verification still cost ~30% more
//! instructions than with traces off (callgrind). So the layer's filter samples instead:
//! a trace starts only at a [`ROOTS`] span (a request, a usage flush), kept with the
//! configured probability; a span inside a kept one is kept; every other span — a child of
//! a request that was not kept — is never created. The SDK then keeps what it is given
//! (`AlwaysOn`).
//!
//! Every span of Keyward is a root or a child of one of its own (no trace context is read
//! from requests), so `parentbased_*` samplers mean the same as their roots' samplers here.

use std::cell::Cell;

use tracing::{Metadata, subscriber::Interest};
use tracing_subscriber::layer::{Context, Filter};

use crate::SPAN_TARGET;

/// `OTEL_TRACES_SAMPLER` or its argument is not one this sampling understands.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SamplerError(String);

/// The spans a trace may start at: a request (`crates/http/src/error.rs`) and a usage
/// flush (`crates/runtime/src/usage.rs`).
pub const ROOTS: &[&str] = &["request", "usage.flush"];

/// The share of root spans kept, from `OTEL_TRACES_SAMPLER` (and `…_ARG`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio(f64);

impl Ratio {
    /// The specification's default is `parentbased_always_on`.
    pub const ALL: Self = Self(1.0);

    pub(crate) fn from_env(sampler: Option<&str>, arg: Option<&str>) -> Result<Self, SamplerError> {
        let ratio = || {
            arg.map_or(Ok(1.0), |a| {
                a.parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| SamplerError(format!("OTEL_TRACES_SAMPLER_ARG={a} is not a ratio between 0 and 1")))
            })
        };
        Ok(Self(match sampler {
            None | Some("always_on" | "parentbased_always_on") => 1.0,
            Some("always_off" | "parentbased_always_off") => 0.0,
            Some("traceidratio" | "parentbased_traceidratio") => ratio()?,
            Some(other) => {
                return Err(SamplerError(format!(
                    "OTEL_TRACES_SAMPLER={other} is not supported (always_on, always_off, traceidratio and their parentbased_ forms are)"
                )));
            }
        }))
    }

    fn keep(self) -> bool {
        if self.0 >= 1.0 {
            return true;
        }
        if self.0 <= 0.0 {
            return false;
        }
        // 53 random bits as a fraction of one.
        let fraction = (next_random() >> 11) as f64 / (1_u64 << 53) as f64;
        fraction < self.0
    }
}

/// The OpenTelemetry layer's filter: Keyward's spans only, sampled at their roots.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadSampler(pub(crate) Ratio);

impl<S> Filter<S> for HeadSampler
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        // The context is this filter's: the current span is the nearest one it enabled.
        if !meta.is_span() || meta.target() != SPAN_TARGET {
            return false;
        }
        if cx.lookup_current().is_some() {
            return true;
        }
        ROOTS.contains(&meta.name()) && self.0.keep()
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.is_span() && meta.target() == SPAN_TARGET && self.0.0 > 0.0 {
            // Decided per span: kept or not depends on its place and a draw.
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        // Every span of ours is INFO; no more, or every dependency's `log::trace!` would
        // become a record to filter.
        Some(tracing::level_filters::LevelFilter::INFO)
    }
}

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

/// A per-thread xorshift64*: sampling needs no cryptographic randomness, only a cheap,
/// even draw.
fn next_random() -> u64 {
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

fn seed() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    // Each `RandomState` has keys of its own (random per thread, stepped per call).
    std::collections::hash_map::RandomState::new().build_hasher().finish() | 1
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.
mod tests {
    use super::*;

    #[test]
    fn the_environment_names_the_ratio() {
        assert_eq!(Ratio::from_env(None, None).unwrap(), Ratio::ALL);
        assert_eq!(Ratio::from_env(Some("parentbased_always_off"), None).unwrap(), Ratio(0.0));
        assert_eq!(Ratio::from_env(Some("parentbased_traceidratio"), Some("0.25")).unwrap(), Ratio(0.25));
        assert!(Ratio::from_env(Some("traceidratio"), Some("2")).is_err());
        assert!(Ratio::from_env(Some("jaeger_remote"), None).is_err());
    }

    #[test]
    fn a_ratio_keeps_about_its_share() {
        let kept = (0..100_000).filter(|_| Ratio(0.1).keep()).count();
        assert!((9_000..11_000).contains(&kept), "{kept}");
        assert!((0..1000).all(|_| Ratio::ALL.keep()));
        assert!((0..1000).all(|_| !Ratio(0.0).keep()));
    }
}
