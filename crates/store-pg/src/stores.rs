//! One module per storage port, each an `impl … for PgStore`.

mod accounts;
mod audit;
mod gateway;
mod idempotency;
mod keys;
mod mail;
mod sessions;
mod usage;
mod users;
mod webhooks;

#[cfg(feature = "testing")]
pub(crate) use audit::chain_head;
pub(crate) use keys::expired_at;
