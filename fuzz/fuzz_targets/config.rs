//! The configuration file (`--config` / `KEYWARD_CONFIG`): TOML an operator writes. Whatever
//! parses, every check `keyward serve` makes of it answers (an error, never a panic), and its
//! `Debug` form (what a log of the whole configuration would show) is never a panic either.
//!
//! The binary crate's own module, compiled here as it is (not a copy): the crate is a binary,
//! and linking it whole would pull every adapter into this build.
#![no_main]

#[allow(dead_code, unused_imports)]
#[path = "../../crates/server/src/config.rs"]
mod config;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = toml::from_str::<config::Config>(text) else { return };
    let _ = config.domain();
    let _ = config.metrics_token();
    let _ = config.secret();
    let _ = config.trusted_proxies();
    let _ = config.database.pool_config();
    let _ = config.cache.config();
    let _ = config.passwords.params();
    let _ = config.passwords.concurrency();
    let _ = config.public_url_at("127.0.0.1:0".parse().unwrap());
    let shown = format!("{config:?}");
    if config.database_url().is_some() {
        assert!(shown.contains("Sensitive(redacted)"), "the database URL is shown redacted");
    }
});
