//! Secrets are types: a plaintext key can be moved around but not printed by accident.

use std::fmt;

/// A plaintext API key. It exists between generation and the one response that shows it,
/// and between a request header and the hash computed from it. `Debug` and `Display` print
/// `[redacted]`; the only way to the characters is [`PlaintextKey::expose_secret`].
#[derive(Clone, PartialEq, Eq)]
pub struct PlaintextKey(String);

impl PlaintextKey {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The characters of the key. Call this only to hash it or to put it in the one
    /// response that returns it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PlaintextKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlaintextKey([redacted])")
    }
}

impl fmt::Display for PlaintextKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_key() {
        let key = PlaintextKey::new("kw_live_supersecretvalue".into());
        assert!(!format!("{key:?}").contains("supersecret"));
        assert!(!format!("{key}").contains("supersecret"));
        assert_eq!(key.expose_secret(), "kw_live_supersecretvalue");
    }
}
