//! The key format of SPEC §2: `{prefix}_{env}_{random}{checksum}`.
//!
//! `random` is 30 base62 characters from a CSPRNG (≈178 bits); `checksum` is the CRC32 of
//! everything before it in base62, zero-padded to 6 characters, so a mistyped or truncated
//! key is rejected by arithmetic alone, before any storage lookup (and secret scanners can
//! tell a real key from a random string). Only a hash of a key is ever stored.

use std::fmt;

use sha2::Digest as _;

use crate::{plan::text_enum, random::RandomSource, secret::PlaintextKey};

pub const RANDOM_LEN: usize = 30;
pub const CHECKSUM_LEN: usize = 6;
const TAIL_LEN: usize = RANDOM_LEN + CHECKSUM_LEN;
/// The base62 alphabet in ASCII order, the same one `base62::encode` writes.
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The environment a key is for, written in the key itself (`sk_live_…`, `sk_test_…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Live,
    Test,
}
text_enum!(Environment { Live => "live", Test => "test" });

/// A keyspace's or the account keys' prefix: 2–20 characters of `[a-z0-9_]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct KeyPrefix(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 2 to 20 characters of a-z, 0-9 and _, not starting or ending with _")]
pub struct InvalidPrefix;

impl KeyPrefix {
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidPrefix> {
        let value = value.into();
        let valid = (2..=20).contains(&value.len())
            && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !value.starts_with('_')
            && !value.ends_with('_');
        if valid { Ok(Self(value)) } else { Err(InvalidPrefix) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn checksum(body: &str) -> [u8; CHECKSUM_LEN] {
    let mut value = crc32fast::hash(body.as_bytes());
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    out
}

/// Issues a new key. Random characters are drawn by rejection sampling so every
/// character of the alphabet is equally likely.
pub fn generate(prefix: &KeyPrefix, environment: Environment, rng: &dyn RandomSource) -> PlaintextKey {
    let mut key = String::with_capacity(prefix.0.len() + 6 + TAIL_LEN);
    key.push_str(&prefix.0);
    key.push('_');
    key.push_str(environment.as_str());
    key.push('_');
    let mut drawn = 0;
    let mut bytes = [0u8; 48];
    while drawn < RANDOM_LEN {
        rng.fill(&mut bytes);
        // 248 = 4 × 62: bytes at or above it would favour the first characters.
        for byte in bytes.iter().copied().filter(|b| *b < 248) {
            if drawn == RANDOM_LEN {
                break;
            }
            key.push(char::from(ALPHABET[usize::from(byte % 62)]));
            drawn += 1;
        }
    }
    let sum = checksum(&key);
    key.extend(sum.iter().copied().map(char::from));
    PlaintextKey::new(key)
}

/// A string that has the shape of a Keyward key and a correct checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    pub prefix: &'a str,
    pub environment: Environment,
    /// The 30 random characters (no checksum).
    pub random: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseKeyError {
    #[error("not in the key format")]
    Malformed,
    #[error("checksum mismatch")]
    BadChecksum,
}

/// Parses a presented key, rejecting it before any lookup when the checksum is wrong.
pub fn parse(key: &str) -> Result<ParsedKey<'_>, ParseKeyError> {
    // `{prefix}_{env}_` is at least 2 + 1 + 4 + 1 bytes before the tail.
    if !key.is_ascii() || key.len() < TAIL_LEN + 8 || key.len() > TAIL_LEN + 26 {
        return Err(ParseKeyError::Malformed);
    }
    let (body, tail) = key.split_at(key.len() - TAIL_LEN);
    let head = body.strip_suffix('_').ok_or(ParseKeyError::Malformed)?;
    let (prefix, env) = head.rsplit_once('_').ok_or(ParseKeyError::Malformed)?;
    let environment = match env {
        "live" => Environment::Live,
        "test" => Environment::Test,
        _ => return Err(ParseKeyError::Malformed),
    };
    if KeyPrefix::new(prefix).is_err() || !tail.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ParseKeyError::Malformed);
    }
    let (random, sum) = tail.split_at(RANDOM_LEN);
    if checksum(&key[..key.len() - CHECKSUM_LEN]) != sum.as_bytes() {
        return Err(ParseKeyError::BadChecksum);
    }
    Ok(ParsedKey { prefix, environment, random })
}

/// The display form of a key: `{prefix}_{env}_` + the first 4 random characters + `…` +
/// the last 4 characters. Enough to recognise a key, far too little to use it.
pub fn display_prefix(key: &PlaintextKey) -> String {
    let key = key.expose_secret();
    match parse(key) {
        Ok(parsed) => {
            let head_len = parsed.prefix.len() + parsed.environment.as_str().len() + 2;
            format!("{}{}…{}", &key[..head_len], &parsed.random[..4], &key[key.len() - 4..])
        }
        // Only native keys have a display prefix; imported keys are shown by name.
        Err(_) => String::from("…"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashAlgorithm {
    /// Native keys.
    Blake3,
    /// Imported legacy keys, looked up by the SHA-256 of the presented string (when no
    /// server secret is configured).
    Sha256,
    /// Imported legacy keys, stored as a keyed BLAKE3 of their SHA-256 under a pepper
    /// derived from the server's secret: a dump of the database alone does not allow
    /// guessing weak legacy keys offline.
    PepperedSha256,
}

impl HashAlgorithm {
    const fn tag(self) -> u8 {
        match self {
            Self::Blake3 => 1,
            Self::Sha256 => 2,
            Self::PepperedSha256 => 3,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Blake3 => "blake3",
            Self::Sha256 => "sha256",
            Self::PepperedSha256 => "peppered-sha256",
        }
    }
}

/// The only form in which a key is stored: an algorithm and a 32-byte digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash {
    algorithm: HashAlgorithm,
    digest: [u8; 32],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be \"sha256:<64 hex digits>\" or \"blake3:<64 hex digits>\"")]
pub struct InvalidHash;

impl KeyHash {
    pub fn blake3(key: &str) -> Self {
        Self { algorithm: HashAlgorithm::Blake3, digest: *blake3::hash(key.as_bytes()).as_bytes() }
    }

    pub fn sha256(key: &str) -> Self {
        Self { algorithm: HashAlgorithm::Sha256, digest: sha2::Sha256::digest(key.as_bytes()).into() }
    }

    /// A legacy key's lookup hash: the SHA-256 of the presented string, peppered when the
    /// server has a secret ([`KeyHash::peppered`]).
    pub fn legacy(presented: &str, pepper: Option<&LegacyPepper>) -> Self {
        let plain = Self::sha256(presented);
        pepper.map_or(plain, |pepper| plain.peppered(pepper))
    }

    /// A SHA-256 hash (as imported, or of a presented legacy key) under the pepper; any
    /// other hash as it is.
    pub fn peppered(self, pepper: &LegacyPepper) -> Self {
        match self.algorithm {
            HashAlgorithm::Sha256 => Self {
                algorithm: HashAlgorithm::PepperedSha256,
                digest: *blake3::keyed_hash(&pepper.0, &self.digest).as_bytes(),
            },
            _ => self,
        }
    }

    /// Parses `sha256:<hex>` or `blake3:<hex>`, as given to `POST /v1/keys/import`.
    pub fn parse_tagged(text: &str) -> Result<Self, InvalidHash> {
        let (name, hex_digest) = text.split_once(':').ok_or(InvalidHash)?;
        let algorithm = match name {
            "sha256" => HashAlgorithm::Sha256,
            "blake3" => HashAlgorithm::Blake3,
            _ => return Err(InvalidHash),
        };
        let mut digest = [0u8; 32];
        hex::decode_to_slice(hex_digest, &mut digest).map_err(|_| InvalidHash)?;
        Ok(Self { algorithm, digest })
    }

    pub fn algorithm(&self) -> HashAlgorithm {
        self.algorithm
    }

    /// The storage form: one tag byte followed by the digest.
    pub fn to_bytes(&self) -> [u8; 33] {
        let mut out = [0u8; 33];
        out[0] = self.algorithm.tag();
        out[1..].copy_from_slice(&self.digest);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (&tag, digest) = bytes.split_first()?;
        let algorithm = match tag {
            1 => HashAlgorithm::Blake3,
            2 => HashAlgorithm::Sha256,
            3 => HashAlgorithm::PepperedSha256,
            _ => return None,
        };
        Some(Self { algorithm, digest: digest.try_into().ok()? })
    }
}

/// The key of the legacy hashes' pepper, derived from the server's secret. `Debug` is
/// redacted.
#[derive(Clone)]
pub struct LegacyPepper([u8; 32]);

impl LegacyPepper {
    /// Derives the pepper from the server's secret (`KEYWARD_SECRET`), for this use only.
    pub fn from_secret(secret: &[u8; 32]) -> Self {
        Self(blake3::derive_key("keyward 2026-12 legacy key pepper", secret))
    }
}

impl fmt::Debug for LegacyPepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LegacyPepper([redacted])")
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hash is not a secret, but there is no reason to spill it into logs either.
        write!(f, "KeyHash({}:{}…)", self.algorithm.name(), hex::encode(&self.digest[..4]))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::random::SeededRandom;

    fn prefix(s: &str) -> KeyPrefix {
        KeyPrefix::new(s).unwrap()
    }

    #[test]
    fn generated_key_has_the_documented_shape() {
        let key = generate(&prefix("gmk_cru"), Environment::Live, &SeededRandom::new(42));
        let text = key.expose_secret();
        assert!(text.starts_with("gmk_cru_live_"));
        assert_eq!(text.len(), "gmk_cru_live_".len() + 36);
        let parsed = parse(text).unwrap();
        assert_eq!(parsed.prefix, "gmk_cru");
        assert_eq!(parsed.environment, Environment::Live);
        let shown = display_prefix(&key);
        assert!(shown.starts_with("gmk_cru_live_"));
        assert_eq!(shown.chars().count(), "gmk_cru_live_".len() + 4 + 1 + 4);
        assert!(shown.ends_with(&text[text.len() - 4..]));
    }

    #[test]
    fn checksum_is_crc32_in_base62() {
        let body = "kw_test_000000000000000000000000000000";
        let expected = format!("{:0>6}", base62::encode(crc32fast::hash(body.as_bytes())));
        assert_eq!(checksum(body).as_slice(), expected.as_bytes());
    }

    #[test]
    fn rejects_wrong_shapes() {
        for bad in ["", "kw_live_", "kw_prod_0123456789012345678901234567890123456", "not a key at all"] {
            assert_eq!(parse(bad), Err(ParseKeyError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn prefixes_are_validated() {
        assert!(KeyPrefix::new("vg").is_ok());
        assert!(KeyPrefix::new("gmk_cru").is_ok());
        for bad in ["v", "UPPER", "has-dash", "_lead", "trail_", "a23456789012345678901"] {
            assert!(KeyPrefix::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hashes_round_trip_through_storage_form() {
        let hash = KeyHash::blake3("kw_live_x");
        assert_eq!(KeyHash::from_bytes(&hash.to_bytes()), Some(hash));
        let tagged = format!("sha256:{}", hex::encode(sha2::Sha256::digest(b"col_legacy")));
        assert_eq!(KeyHash::parse_tagged(&tagged).unwrap(), KeyHash::sha256("col_legacy"));
        assert!(KeyHash::parse_tagged("md5:00").is_err());
        assert!(KeyHash::parse_tagged("sha256:zz").is_err());
    }

    fn arb_prefix() -> impl Strategy<Value = KeyPrefix> {
        "[a-z0-9][a-z0-9_]{0,18}[a-z0-9]".prop_map(|s| KeyPrefix::new(s).unwrap())
    }

    proptest! {
        #[test]
        fn every_generated_key_parses(seed in any::<u64>(), p in arb_prefix(), live in any::<bool>()) {
            let env = if live { Environment::Live } else { Environment::Test };
            let key = generate(&p, env, &SeededRandom::new(seed));
            let parsed = parse(key.expose_secret()).unwrap();
            prop_assert_eq!(parsed.prefix, p.as_str());
            prop_assert_eq!(parsed.environment, env);
        }

        #[test]
        fn every_single_character_corruption_is_rejected(
            seed in any::<u64>(),
            p in arb_prefix(),
            position in any::<prop::sample::Index>(),
            replacement in prop::sample::select(ALPHABET.iter().copied().chain(*b"_-!").collect::<Vec<u8>>()),
        ) {
            let key = generate(&p, Environment::Test, &SeededRandom::new(seed));
            let mut bytes = key.expose_secret().as_bytes().to_vec();
            let i = position.index(bytes.len());
            prop_assume!(bytes[i] != replacement);
            bytes[i] = replacement;
            let corrupted = String::from_utf8(bytes).unwrap();
            prop_assert!(parse(&corrupted).is_err(), "{} was accepted", corrupted);
        }
    }
}
