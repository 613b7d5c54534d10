//! Passwords: a secret type, the length policy, and argon2id hashing at the OWASP minimum
//! (m = 19456 KiB, t = 2, p = 1). Hashing is pure computation (~20 ms of one core), so it
//! lives here; running it off the async executor is the adapter's job (see the
//! `PasswordHasher` port in `ports`).

use std::fmt;

use argon2::{
    Algorithm, Argon2, Params, PasswordHash as PhcHash, PasswordHasher as _, PasswordVerifier as _, Version,
    password_hash::SaltString,
};

use crate::random::RandomSource;

pub const MIN_PASSWORD_CHARS: usize = 10;
pub const MAX_PASSWORD_BYTES: usize = 1_024;

/// A plaintext password. `Debug` and `Display` are redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_BYTES} characters")]
pub struct WeakPassword;

impl Password {
    /// A password as presented at login: any length is accepted (and simply fails to match).
    pub fn presented(value: String) -> Self {
        Self(value)
    }

    /// A new password, checked against the length policy (NIST SP 800-63B: length, not
    /// composition rules).
    pub fn new(value: String) -> Result<Self, WeakPassword> {
        if value.chars().count() < MIN_PASSWORD_CHARS || value.len() > MAX_PASSWORD_BYTES {
            return Err(WeakPassword);
        }
        Ok(Self(value))
    }

    /// A random password for one-time use (CLI and `POST /v1/account/users`): 24 base62
    /// characters, about 143 bits.
    pub fn generate(rng: &dyn RandomSource) -> Self {
        const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut out = String::with_capacity(24);
        let mut bytes = [0u8; 64];
        while out.len() < 24 {
            rng.fill(&mut bytes);
            for b in bytes.iter().copied().filter(|b| *b < 248).take(24 - out.len()) {
                out.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
        Self(out)
    }

    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// An argon2 hash in PHC string form (`$argon2id$v=19$m=19456,t=2,p=1$…`).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn from_phc(value: String) -> Self {
        Self(value)
    }

    pub fn as_phc(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash([redacted])")
    }
}

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashParams {
    /// The OWASP minimum for argon2id.
    fn default() -> Self {
        Self { memory_kib: 19_456, iterations: 2, parallelism: 1 }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashFailure(String);

impl HashFailure {
    pub fn new(reason: &str) -> Self {
        Self(reason.to_owned())
    }
}

impl HashParams {
    fn argon2(&self) -> Result<Argon2<'static>, HashFailure> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| HashFailure(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// Hashes with a fresh 16-byte salt.
    pub fn hash(&self, password: &Password, rng: &dyn RandomSource) -> Result<PasswordHash, HashFailure> {
        let mut salt = [0u8; 16];
        rng.fill(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| HashFailure(e.to_string()))?;
        let hash = self
            .argon2()?
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map_err(|e| HashFailure(e.to_string()))?;
        Ok(PasswordHash(hash.to_string()))
    }

    /// Checks `password` against `hash`, and whether the hash should be redone with these
    /// parameters (it was made with others).
    pub fn verify(&self, password: &Password, hash: &PasswordHash) -> PasswordCheck {
        let Ok(parsed) = PhcHash::new(hash.as_phc()) else {
            return PasswordCheck { matches: false, needs_rehash: false };
        };
        // Verification uses the parameters recorded in the hash, whatever ours are now.
        let matches = Argon2::default().verify_password(password.expose_secret().as_bytes(), &parsed).is_ok();
        let current = Params::try_from(&parsed).ok().is_some_and(|p| {
            parsed.algorithm == Algorithm::Argon2id.ident()
                && p.m_cost() == self.memory_kib
                && p.t_cost() == self.iterations
                && p.p_cost() == self.parallelism
        });
        PasswordCheck { matches, needs_rehash: matches && !current }
    }
}

/// The result of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordCheck {
    pub matches: bool,
    /// The password matched a hash made with other parameters: store a new hash.
    pub needs_rehash: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;

    #[test]
    fn hashes_verify_and_old_parameters_ask_for_a_rehash() {
        let rng = SeededRandom::new(1);
        let password = Password::new("correct horse battery".into()).unwrap();
        let params = HashParams::default();
        let hash = params.hash(&password, &rng).unwrap();
        assert!(hash.as_phc().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_eq!(params.verify(&password, &hash), PasswordCheck { matches: true, needs_rehash: false });
        let wrong = Password::presented("correct horse battery!".into());
        assert_eq!(params.verify(&wrong, &hash), PasswordCheck { matches: false, needs_rehash: false });
        let stronger = HashParams { iterations: 3, ..params };
        assert_eq!(stronger.verify(&password, &hash), PasswordCheck { matches: true, needs_rehash: true });
        assert!(!format!("{password:?} {hash:?}").contains("horse"));
        assert!(!format!("{hash:?}").contains("argon2id"));
    }

    #[test]
    fn policy_is_about_length() {
        assert!(Password::new("short".into()).is_err());
        assert!(Password::new("x".repeat(2000)).is_err());
        assert!(Password::new("ten chars!".into()).is_ok());
        let generated = Password::generate(&SeededRandom::new(5));
        assert_eq!(generated.expose_secret().len(), 24);
    }
}
