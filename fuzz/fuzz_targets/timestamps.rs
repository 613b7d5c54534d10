//! Timestamps in bodies and queries (`expires_at`, `since`, `until`): RFC 3339, within what
//! `time` and PostgreSQL both hold. One that parses prints back to one that parses equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use time::format_description::well_known::Rfc3339;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(instant) = keyward_http::timestamp::parse(text) else { return };
    assert_eq!(instant.offset(), time::UtcOffset::UTC, "kept in UTC");
    let printed = instant.format(&Rfc3339).expect("an accepted instant prints");
    assert_eq!(keyward_http::timestamp::parse(&printed), Ok(instant), "{printed}");
});
