//! Scopes and wildcards: a scope set as a client writes it (one scope per line). Every valid
//! scope grants itself; `*` grants everything; `resource:*` grants exactly its resource.
#![no_main]

use keyward_domain::{Scope, ScopeSet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let values: Vec<&str> = text.split('\n').collect();
    let _ = ScopeSet::parse(&values);
    let everything = Scope::new("*").unwrap();
    for value in values {
        let Ok(scope) = Scope::new(value) else { continue };
        assert!(scope.grants(&scope), "{value:?} grants itself");
        assert!(everything.grants(&scope));
        let (resource, _) = value.split_once(':').unwrap_or((value, ""));
        if let Ok(wildcard) = Scope::new(format!("{resource}:*")) {
            assert!(wildcard.grants(&scope) || value == "*", "{resource}:* grants {value:?}");
        }
        let set = ScopeSet::from_scopes([scope.clone()]);
        assert!(set.grants(&scope));
    }
});
