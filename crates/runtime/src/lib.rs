//! Keyward's runtime: work that is neither a business rule (the domain) nor a protocol or
//! a store (the adapters), but runs on tokio beside them:
//!
//! - [`usage`]: the usage flusher, which `keyward serve` and the embedded verifier both run;
//! - [`password`]: the password hasher on a bounded blocking pool;
//! - [`embedded`]: the embedded verifier's composition (store, resolver, limits, flusher);
//! - [`retention`]: the scheduler of the retention purges.
//!
//! Architecture invariant: this crate depends on the domain only. What it composes — a
//! store, a resolver, a limiter — it takes through the domain's ports.

pub mod embedded;
pub mod password;
pub mod retention;
pub mod usage;
