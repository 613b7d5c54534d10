//! Credential headers: `Authorization` (Bearer, Basic) and `X-API-Key`, as many of each as a
//! request may carry. The input is split at NUL bytes into header values: the first byte
//! of each says which header it is.
#![no_main]

use actix_web::http::header::HeaderValue;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (mut authorization, mut api_keys) = (Vec::new(), Vec::new());
    for part in data.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let Ok(value) = HeaderValue::from_bytes(&part[1..]) else { continue };
        if part[0] % 2 == 0 { authorization.push(value) } else { api_keys.push(value) }
    }
    match keyward_http::extract::parse_credential(&authorization, &api_keys) {
        Ok(Some(credential)) => {
            assert!(!(authorization.is_empty() && api_keys.is_empty()), "a credential comes from a header");
            // A Bearer or X-API-Key credential is the value as sent (trimmed).
            if credential.basic_account.is_none() {
                let key = credential.key.expose_secret();
                let sent =
                    api_keys.iter().chain(&authorization).any(|v| v.to_str().is_ok_and(|s| s.trim().ends_with(key)));
                assert!(sent, "the key was sent");
            }
        }
        Ok(None) => assert!(authorization.is_empty() && api_keys.is_empty(), "headers present but nothing read"),
        Err(_) => {}
    }
});
