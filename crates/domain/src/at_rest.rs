//! Secrets sealed at rest (issue #29): what Keyward must keep readable to use — webhook
//! signing secrets — is stored sealed with a key derived from `KEYWARD_SECRET`, so that a
//! dump of the database holds no usable secret.
//!
//! XChaCha20-Poly1305 (RustCrypto), a fresh 24-byte nonce each time, the row's id and the
//! column as associated data: a sealed value copied to another row or column does not
//! open. The key is derived with BLAKE3's `derive_key` under a context of its own, so it is
//! never the key that seals idempotent replays, though both come from one secret.
//!
//! Rotation: [`AtRest::new`] takes the previous secret too (`KEYWARD_SECRET_PREVIOUS`);
//! values sealed under it still open, and [`AtRest::open`] says so, for the adapter to
//! seal them again under the current one (docs/decisions.md, "Secrets at rest").

use std::fmt;

use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};

use crate::random::RandomSource;

/// The first byte of a sealed value (its format's version).
const SEALED_V1: u8 = 0x01;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const CONTEXT: &str = "keyward 2026-12-07 secrets at rest v1";

/// Seals and opens secrets kept at rest. `Debug` shows nothing of the keys.
#[derive(Clone)]
pub struct AtRest {
    current: XChaCha20Poly1305,
    previous: Option<XChaCha20Poly1305>,
}

impl fmt::Debug for AtRest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtRest").field("previous", &self.previous.is_some()).finish_non_exhaustive()
    }
}

/// Which key opened a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    Current,
    /// The previous secret's: seal it again under the current one.
    Previous,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a sealed secret does not open with this KEYWARD_SECRET (nor KEYWARD_SECRET_PREVIOUS), or was altered")]
pub struct Unsealable;

fn cipher(secret: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&blake3::derive_key(CONTEXT, secret).into())
}

impl AtRest {
    /// Keys derived from `secret`, and from `previous` to open what it sealed.
    pub fn new(secret: &[u8; 32], previous: Option<&[u8; 32]>) -> Self {
        Self { current: cipher(secret), previous: previous.map(cipher) }
    }

    /// Whether `stored` is in the sealed form (anything else is a plaintext written
    /// before sealing was configured).
    pub fn is_sealed(stored: &[u8]) -> bool {
        stored.first() == Some(&SEALED_V1) && stored.len() >= 1 + NONCE_LEN + TAG_LEN
    }

    /// `plaintext` sealed under the current key, bound to `context` (the row and column).
    pub fn seal(&self, context: &[u8], plaintext: &[u8], rng: &dyn RandomSource) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce);
        let sealed = self
            .current
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad: context })
            .unwrap_or_default();
        [&[SEALED_V1][..], &nonce, &sealed].concat()
    }

    /// What `sealed` holds, if it was sealed for `context` under the current or the
    /// previous key.
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<(Vec<u8>, Opened), Unsealable> {
        if !Self::is_sealed(sealed) {
            return Err(Unsealable);
        }
        let (nonce, body) = sealed[1..].split_at(NONCE_LEN);
        let payload = || Payload { msg: body, aad: context };
        if let Ok(plain) = self.current.decrypt(XNonce::from_slice(nonce), payload()) {
            return Ok((plain, Opened::Current));
        }
        let previous = self.previous.as_ref().ok_or(Unsealable)?;
        let plain = previous.decrypt(XNonce::from_slice(nonce), payload()).map_err(|_| Unsealable)?;
        Ok((plain, Opened::Previous))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;

    #[test]
    fn a_sealed_value_opens_for_its_row_and_column_only() {
        let rng = SeededRandom::new(7);
        let at_rest = AtRest::new(&[1; 32], None);
        let sealed = at_rest.seal(b"wh_1/secret", b"twenty-four secret bytes", &rng);
        assert!(AtRest::is_sealed(&sealed));
        assert!(!sealed.windows(6).any(|w| w == b"secret"), "no plaintext in the sealed form");
        assert_eq!(
            at_rest.open(b"wh_1/secret", &sealed).unwrap(),
            (b"twenty-four secret bytes".to_vec(), Opened::Current)
        );
        assert_eq!(at_rest.open(b"wh_2/secret", &sealed), Err(Unsealable), "another row");
        assert_eq!(at_rest.open(b"wh_1/previous_secret", &sealed), Err(Unsealable), "another column");
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(at_rest.open(b"wh_1/secret", &altered), Err(Unsealable));
        assert!(!AtRest::is_sealed(b"twenty-four secret bytes"), "a plaintext is told apart");
    }

    #[test]
    fn after_a_rotation_the_previous_secret_still_opens_and_says_so() {
        let rng = SeededRandom::new(8);
        let old = AtRest::new(&[1; 32], None);
        let sealed = old.seal(b"ctx", b"value", &rng);
        assert_eq!(AtRest::new(&[2; 32], None).open(b"ctx", &sealed), Err(Unsealable));
        let rotated = AtRest::new(&[2; 32], Some(&[1; 32]));
        assert_eq!(rotated.open(b"ctx", &sealed).unwrap(), (b"value".to_vec(), Opened::Previous));
        let resealed = rotated.seal(b"ctx", b"value", &rng);
        assert_eq!(rotated.open(b"ctx", &resealed).unwrap().1, Opened::Current);
        assert!(!format!("{rotated:?}").contains('['), "{rotated:?}");
    }
}
