//! The public keys GitHub signs its secret-scanning reports with, and the check of a
//! report's signature: ECDSA P-256 with SHA-256 over the raw body, the signature in the
//! `Github-Public-Key-Signature` header (base64 of its DER form), the key named by
//! `Github-Public-Key-Identifier`.
//!
//! The keys come from the operator (a file in the format of GitHub's
//! `https://api.github.com/meta/public_keys/secret_scanning`): an instance may have no
//! internet, and a key fetched by the endpoint it protects would prove nothing.

use std::sync::Arc;

use base64::Engine as _;
use ring::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};

/// The DER `SubjectPublicKeyInfo` header of every P-256 public key: the algorithm
/// (id-ecPublicKey, prime256v1) and the bit string's start; the 65-byte point follows.
const P256_SPKI_HEADER: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// GitHub's public keys by identifier. Empty: GitHub reports are not accepted (404).
#[derive(Clone, Default)]
pub struct GitHubKeys(Arc<Vec<(String, Vec<u8>)>>);

impl std::fmt::Debug for GitHubKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(id, _)| id)).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InvalidGitHubKeys {
    #[error("not GitHub's public-keys document ({{\"public_keys\": [{{\"key_identifier\", \"key\"}}]}}): {0}")]
    Format(String),
    #[error("key {0}: not a PEM P-256 public key")]
    Key(String),
}

#[derive(serde::Deserialize)]
struct Document {
    public_keys: Vec<Entry>,
}

#[derive(serde::Deserialize)]
struct Entry {
    key_identifier: String,
    key: String,
}

impl GitHubKeys {
    /// Reads GitHub's public-keys document (JSON): every key, current or not, is accepted
    /// (GitHub signs with the current one; an older one may still sign reports in flight).
    pub fn from_json(text: &str) -> Result<Self, InvalidGitHubKeys> {
        let document: Document = serde_json::from_str(text).map_err(|e| InvalidGitHubKeys::Format(e.to_string()))?;
        let keys = document
            .public_keys
            .into_iter()
            .map(|entry| {
                let point =
                    p256_point(&entry.key).ok_or_else(|| InvalidGitHubKeys::Key(entry.key_identifier.clone()))?;
                Ok((entry.key_identifier, point))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(Arc::new(keys)))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the set holds the key `identifier`.
    pub fn knows(&self, identifier: &str) -> bool {
        self.0.iter().any(|(id, _)| id == identifier)
    }

    /// Whether `signature` (base64 DER) is the key `identifier`'s signature of `body`.
    pub fn verify(&self, identifier: &str, signature: &str, body: &[u8]) -> bool {
        let Some((_, point)) = self.0.iter().find(|(id, _)| id == identifier) else { return false };
        let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else { return false };
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point).verify(body, &signature).is_ok()
    }
}

/// The PEM `PUBLIC KEY` of a P-256 point, as GitHub's document writes it (tests).
#[cfg(test)]
pub(crate) fn pem_of(point: &[u8]) -> String {
    let der = [&P256_SPKI_HEADER[..], point].concat();
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n", &text[..64], &text[64..])
}

/// The uncompressed point of a PEM `PUBLIC KEY` on P-256.
fn p256_point(pem: &str) -> Option<Vec<u8>> {
    let body = pem.trim().strip_prefix("-----BEGIN PUBLIC KEY-----")?.strip_suffix("-----END PUBLIC KEY-----")?;
    let base64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(base64).ok()?;
    let point = der.strip_prefix(&P256_SPKI_HEADER[..])?;
    (point.len() == 65 && point[0] == 0x04).then(|| point.to_vec())
}

#[cfg(test)]
mod tests {
    use ring::{
        rand::SystemRandom,
        signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _},
    };

    use super::*;

    #[test]
    fn a_report_signed_by_a_configured_key_verifies_and_nothing_else_does() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let document = serde_json::json!({"public_keys": [
            {"key_identifier": "k1", "key": pem_of(pair.public_key().as_ref()), "is_current": true}
        ]});
        let keys = GitHubKeys::from_json(&document.to_string()).unwrap();
        let body = br#"[{"token":"x","type":"t","url":"u","source":"content"}]"#;
        let signature = base64::engine::general_purpose::STANDARD.encode(pair.sign(&rng, body).unwrap());
        assert!(keys.verify("k1", &signature, body));
        assert!(!keys.verify("k2", &signature, body), "an unknown key identifier");
        assert!(!keys.verify("k1", &signature, b"[]"), "another body");
        assert!(!keys.verify("k1", "not base64!", body));
        assert!(!keys.verify("k1", "", body));
        assert_eq!(format!("{keys:?}"), r#"["k1"]"#);
    }

    #[test]
    fn a_document_that_is_not_p256_keys_is_refused() {
        assert!(GitHubKeys::from_json("{}").is_err());
        let bad = serde_json::json!({"public_keys": [{"key_identifier": "k", "key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"}]});
        assert!(matches!(GitHubKeys::from_json(&bad.to_string()), Err(InvalidGitHubKeys::Key(id)) if id == "k"));
    }
}
