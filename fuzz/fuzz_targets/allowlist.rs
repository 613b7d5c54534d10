//! IP allowlist entries: addresses, CIDR networks and host names, one per line, as a client
//! writes them. A list is within itself; an accepted host name is lowercase and bounded.
#![no_main]

use keyward_domain::{Hostname, IpAllowlist};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut list = IpAllowlist::default();
    for entry in text.split('\n') {
        let _ = list.push(entry);
        if let Ok(name) = Hostname::new(entry) {
            assert!(name.as_str().len() <= 253 && !name.as_str().bytes().any(|b| b.is_ascii_uppercase()));
        }
    }
    assert!(list.is_within(&list), "a list is within itself");
    assert!(list.is_within(&IpAllowlist::default()), "every list is within the empty one");
});
