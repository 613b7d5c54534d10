//! Keyward's runtime: work that is neither a business rule (the domain) nor a protocol or
//! a store (the adapters), but runs on tokio beside them. Today: the usage flusher, which
//! both `keyward serve` (through `keyward-http`) and the embedded verifier
//! (`keyward-store-pg`) run — written once here. Issue #14 moves the password-hashing pool,
//! the retention purges and the embedded verifier's composition here next.

pub mod usage;
