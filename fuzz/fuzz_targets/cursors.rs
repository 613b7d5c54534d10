//! Pagination cursors (`?cursor=`): opaque to clients, so anything may come back. One that
//! decodes names a position that encodes to a cursor naming the same position.
#![no_main]

use keyward_http::cursor::{AuditCursor, UsageCursor, decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(position) = decode::<UsageCursor>(text) {
        assert_eq!(decode::<UsageCursor>(&encode(position)).unwrap(), position);
    }
    if let Ok(position) = decode::<AuditCursor>(text) {
        assert_eq!(decode::<AuditCursor>(&encode(position)).unwrap(), position);
    }
    if let Ok(id) = decode::<keyward_domain::KeyId>(text) {
        assert_eq!(decode::<keyward_domain::KeyId>(&encode(id)).unwrap(), id);
    }
});
