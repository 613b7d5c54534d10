//! Idempotency keys with Stripe's semantics: the first request with a key runs; a retry of
//! the same request within 24 hours gets the first response again; the same key on a
//! different request is refused (422), and while the first is still running (409).
//!
//! Stored responses can hold a plaintext key (the response of `POST /v1/keys`), so every
//! stored body is sealed with XChaCha20-Poly1305 under the server's secret.

use std::fmt;

use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};
use time::{Duration, OffsetDateTime};

use crate::{id::AccountId, random::RandomSource};

/// How long a key is remembered.
pub const RETENTION: Duration = Duration::hours(24);
/// How long a claim protects a request that is still running; a crashed request's claim
/// lapses after this and the key can be used again.
pub const LEASE: Duration = Duration::seconds(60);
pub const MAX_KEY_LEN: usize = 255;

/// What identifies "the same request": method, path, canonical body and the caller.
pub fn fingerprint(method: &str, path: &str, body_hash: &[u8; 32], principal: &str) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    for part in [method.as_bytes(), b"\n", path.as_bytes(), b"\n", body_hash, b"\n", principal.as_bytes()] {
        hasher.update(part);
    }
    *hasher.finalize().as_bytes()
}

/// The hash of a request body: JSON bodies by their canonical form (object keys sorted,
/// whitespace gone), so formatting differences are the same request.
pub fn body_hash(body: &[u8]) -> [u8; 32] {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => *blake3::hash(&serde_json::to_vec(&value).unwrap_or_default()).as_bytes(),
        Err(_) => *blake3::hash(body).as_bytes(),
    }
}

/// A response kept for replay; `body` is sealed.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub sealed_body: Vec<u8>,
}

impl fmt::Debug for StoredResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredResponse").field("status", &self.status).field("sealed_body", &"[sealed]").finish()
    }
}

/// What a claim on a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is ours: run the request, then complete or release it.
    Claimed,
    /// Another request holds the key and is still running.
    InFlight { fingerprint: [u8; 32] },
    /// A request with this key finished.
    Completed { fingerprint: [u8; 32], response: StoredResponse },
}

/// Seals stored bodies: XChaCha20-Poly1305, a fresh 24-byte nonce each, the account and key
/// as associated data (a body cannot be moved to another key unnoticed).
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the stored response cannot be opened (sealed under another secret, or altered)")]
pub struct Unsealable;

impl Sealer {
    pub fn new(secret: &[u8; 32]) -> Self {
        Self { cipher: XChaCha20Poly1305::new(secret.into()) }
    }

    /// A secret for this process only (the embedded default).
    pub fn ephemeral(rng: &dyn RandomSource) -> Self {
        let mut secret = [0u8; 32];
        rng.fill(&mut secret);
        Self::new(&secret)
    }

    fn aad(account: AccountId, key: &str) -> Vec<u8> {
        format!("{account}\n{key}").into_bytes()
    }

    pub fn seal(&self, account: AccountId, key: &str, body: &[u8], rng: &dyn RandomSource) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        rng.fill(&mut nonce);
        let aad = Self::aad(account, key);
        let sealed =
            self.cipher.encrypt(XNonce::from_slice(&nonce), Payload { msg: body, aad: &aad }).unwrap_or_default();
        [nonce.as_slice(), &sealed].concat()
    }

    pub fn open(&self, account: AccountId, key: &str, sealed: &[u8]) -> Result<Vec<u8>, Unsealable> {
        if sealed.len() < 24 {
            return Err(Unsealable);
        }
        let (nonce, body) = sealed.split_at(24);
        let aad = Self::aad(account, key);
        self.cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad: &aad }).map_err(|_| Unsealable)
    }
}

/// Whether a response is kept for replay: everything the request's execution produced, but
/// not 5xx (a retry should run again) nor refusals before execution (bad input, missing
/// credentials, limits), which a corrected retry with the same key must be able to pass.
pub fn keeps(status: u16, error_code: Option<&str>) -> bool {
    match status {
        200..=299 => true,
        400..=499 => matches!(error_code, Some("not_found" | "key_limit_reached" | "keyspace_not_empty" | "forbidden")),
        _ => false,
    }
}

/// Whether a claim found in storage has lapsed (older than the retention, or an in-flight
/// claim past its lease).
pub fn lapsed(created_at: OffsetDateTime, lease_until: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
    created_at + RETENTION <= now || lease_until.is_some_and(|until| until <= now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;

    #[test]
    fn sealed_bodies_open_only_for_their_key() {
        let rng = SeededRandom::new(1);
        let sealer = Sealer::ephemeral(&rng);
        let account = AccountId::generate(OffsetDateTime::UNIX_EPOCH, &rng);
        let sealed = sealer.seal(account, "k1", br#"{"key":"kw_live_secret"}"#, &rng);
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(sealer.open(account, "k1", &sealed).unwrap(), br#"{"key":"kw_live_secret"}"#);
        assert_eq!(sealer.open(account, "k2", &sealed), Err(Unsealable));
        assert_eq!(Sealer::ephemeral(&SeededRandom::new(2)).open(account, "k1", &sealed), Err(Unsealable));
    }

    #[test]
    fn formatting_does_not_change_the_request() {
        assert_eq!(body_hash(br#"{"a":1,"b":[1,2]}"#), body_hash(b"{ \"b\": [1, 2],\n \"a\": 1 }"));
        assert_ne!(body_hash(br#"{"a":1}"#), body_hash(br#"{"a":2}"#));
        let h = body_hash(b"{}");
        assert_ne!(fingerprint("POST", "/v1/keys", &h, "key_a"), fingerprint("POST", "/v1/keys", &h, "key_b"));
    }

    #[test]
    fn what_is_kept() {
        assert!(keeps(201, None));
        assert!(keeps(403, Some("key_limit_reached")));
        assert!(!keeps(400, Some("validation_failed")));
        assert!(!keeps(429, Some("rate_limited")));
        assert!(!keeps(503, Some("unavailable")));
    }
}
