//! `Idempotency-Key` header values: accepted ones are 1–255 visible ASCII characters and
//! kept exactly as sent.
#![no_main]

use actix_web::http::header::HeaderValue;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else { return };
    if let Ok(key) = keyward_http::idempotency::check_idempotency_key(&value) {
        assert_eq!(key.as_bytes(), data);
        assert!((1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()));
    }
});
