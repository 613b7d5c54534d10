//! Usage metering without a write on the hot path: requests append to the domain's
//! [`UsageMeter`], and the flusher of `keyward-runtime` writes it in batches. Re-exported
//! here for the server and the HTTP tests.

pub use keyward_domain::usage::UsageMeter;
pub use keyward_runtime::usage::{Flusher, flush, spawn_flusher};
