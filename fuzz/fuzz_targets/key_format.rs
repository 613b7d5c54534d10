//! The key format and its checksum (`keyward_domain::key_format::parse`): whatever a client
//! presents. A key that parses must reassemble from its parts; one changed character of it
//! must not (the checksum's promise).
#![no_main]

use keyward_domain::key_format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(parsed) = key_format::parse(text) else { return };
    let env = match parsed.environment {
        keyward_domain::Environment::Live => "live",
        keyward_domain::Environment::Test => "test",
    };
    assert!(text.starts_with(&format!("{}_{env}_{}", parsed.prefix, parsed.random)), "{text:?} reassembles");
    // Any single substitution in the random part is caught by the checksum.
    let position = text.len() - 7;
    let mut changed = text.as_bytes().to_vec();
    changed[position] = if changed[position] == b'a' { b'b' } else { b'a' };
    let changed = String::from_utf8(changed).unwrap();
    assert!(key_format::parse(&changed).is_err(), "{changed:?} passed the checksum of {text:?}");
});
