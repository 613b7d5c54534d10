//! Where GitHub's secret-scanning keys come from (issue #29): a file the operator pins
//! (`KEYWARD_GITHUB_KEYS_FILE`), or GitHub's public-keys document fetched from a URL
//! (`KEYWARD_GITHUB_KEYS_URL`, GitHub's by default), as crates.io does: kept for 24 hours,
//! fetched again once when a report names a key identifier the set lacks (GitHub rotated
//! its key), and the last good set kept through an outage or a bad answer.
//!
//! The fetch itself is the binary's (an HTTP client is an adapter's business): this module
//! holds the policy, behind [`KeysDocument`].

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use super::GitHubKeys;

/// How long a fetched set is used before it is fetched again.
pub const KEYS_TTL: Duration = Duration::from_secs(24 * 3600);
/// The least time between two fetches a report's unknown key identifier may cause: a
/// stranger sending made-up identifiers cannot make Keyward hammer GitHub.
pub const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(60);

/// Fetches GitHub's public-keys document (JSON text), or says why it could not.
pub trait KeysDocument: Send + Sync + 'static {
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + '_>>;
}

/// The keys a report's signature is checked with.
#[derive(Clone, Default)]
pub enum GitHubKeyring {
    /// GitHub's reports are not accepted (the route answers 404).
    #[default]
    Off,
    /// The operator's file: these keys, for good.
    Fixed(GitHubKeys),
    /// Fetched, cached, refreshed.
    Fetched(Arc<FetchedKeys>),
}

impl std::fmt::Debug for GitHubKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Off => f.write_str("Off"),
            Self::Fixed(keys) => f.debug_tuple("Fixed").field(keys).finish(),
            Self::Fetched(keys) => f.debug_tuple("Fetched").field(keys).finish(),
        }
    }
}

impl From<GitHubKeys> for GitHubKeyring {
    fn from(keys: GitHubKeys) -> Self {
        if keys.is_empty() { Self::Off } else { Self::Fixed(keys) }
    }
}

/// What checking a report's signature found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    Genuine,
    /// Not signed by a key of the set (or not validly).
    Forged,
    /// No set of keys could ever be had: GitHub should try again later.
    NoKeys,
}

impl GitHubKeyring {
    pub fn is_off(&self) -> bool {
        matches!(self, Self::Off)
    }

    /// Whether `signature` is the key `identifier`'s signature of `body`.
    pub async fn check(&self, identifier: &str, signature: &str, body: &[u8]) -> Checked {
        let keys = match self {
            Self::Off => return Checked::NoKeys,
            Self::Fixed(keys) => keys.clone(),
            Self::Fetched(fetched) => match fetched.keys_for(identifier).await {
                Some(keys) => keys,
                None => return Checked::NoKeys,
            },
        };
        if keys.verify(identifier, signature, body) { Checked::Genuine } else { Checked::Forged }
    }
}

/// A fetched set and when; what was last tried and when.
struct Cached {
    keys: Option<GitHubKeys>,
    fetched_at: Option<Instant>,
    /// The last fetch tried, for whatever reason.
    tried_at: Option<Instant>,
    /// The last fetch an unknown key identifier caused.
    refetched_at: Option<Instant>,
}

/// GitHub's keys as fetched from a [`KeysDocument`], for [`KEYS_TTL`].
pub struct FetchedKeys {
    source: Box<dyn KeysDocument>,
    cached: RwLock<Cached>,
    ttl: Duration,
    refetch_every: Duration,
}

impl std::fmt::Debug for FetchedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchedKeys").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl FetchedKeys {
    pub fn new(source: impl KeysDocument) -> Self {
        Self::with_timings(source, KEYS_TTL, REFETCH_AT_MOST_EVERY)
    }

    /// With other lifetimes (tests).
    pub fn with_timings(source: impl KeysDocument, ttl: Duration, refetch_every: Duration) -> Self {
        let cached = Cached { keys: None, fetched_at: None, tried_at: None, refetched_at: None };
        Self { source: Box::new(source), cached: RwLock::new(cached), ttl, refetch_every }
    }

    /// The set to check a signature by `identifier` with: the cached one while it is
    /// fresh and knows `identifier`; otherwise fetched again — when stale, at most once per
    /// `refetch_every` (an outage is not hammered); for an identifier the set lacks, at
    /// most once per `refetch_every` too (made-up identifiers are not a flood of fetches) —
    /// or the last good one if that fails. `None`: never had one.
    pub async fn keys_for(&self, identifier: &str) -> Option<GitHubKeys> {
        let now = Instant::now();
        let long_ago = |at: Option<Instant>| at.is_none_or(|at| now.duration_since(at) >= self.refetch_every);
        let (keys, stale, unknown) = {
            let cached = self.cached.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let stale =
                cached.fetched_at.is_none_or(|at| now.duration_since(at) >= self.ttl) && long_ago(cached.tried_at);
            let unknown = cached.keys.as_ref().is_some_and(|k| !k.knows(identifier)) && long_ago(cached.refetched_at);
            (cached.keys.clone(), stale, unknown)
        };
        if !stale && !unknown {
            return keys;
        }
        {
            let mut cached = self.cached.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            cached.tried_at = Some(now);
            if unknown {
                cached.refetched_at = Some(now);
            }
        }
        let fetched =
            self.source.fetch().await.and_then(|text| GitHubKeys::from_json(&text).map_err(|e| e.to_string()));
        match fetched {
            Ok(fresh) if !fresh.is_empty() => {
                let mut cached = self.cached.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                cached.keys = Some(fresh.clone());
                cached.fetched_at = Some(now);
                tracing::info!(keys = ?fresh, "GitHub's secret-scanning keys fetched");
                Some(fresh)
            }
            Ok(_) => {
                tracing::warn!("GitHub's secret-scanning keys document holds no key; keeping the last good set");
                keys
            }
            Err(error) => {
                tracing::warn!(%error, "GitHub's secret-scanning keys could not be fetched; keeping the last good set");
                keys
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Answers each fetch with the next of `answers` (the last repeated), counting them.
    struct Answers(Mutex<(Vec<Result<String, String>>, usize)>);

    impl KeysDocument for Arc<Answers> {
        fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + '_>> {
            let mut state = self.0.lock().unwrap();
            state.1 += 1;
            let answer = if state.0.len() > 1 { state.0.remove(0) } else { state.0[0].clone() };
            Box::pin(async move { answer })
        }
    }

    fn fetches(answers: &Arc<Answers>) -> usize {
        answers.0.lock().unwrap().1
    }

    fn document(ids: &[&str]) -> String {
        // Any P-256 key serves: what is tested is which identifiers are known.
        use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let pem = super::super::github::pem_of(pair.public_key().as_ref());
        let keys: Vec<_> = ids.iter().map(|id| serde_json::json!({"key_identifier": id, "key": pem})).collect();
        serde_json::json!({ "public_keys": keys }).to_string()
    }

    #[tokio::test]
    async fn a_set_is_kept_refetched_for_an_unknown_key_and_kept_through_an_outage() {
        let answers = Arc::new(Answers(Mutex::new((
            vec![Ok(document(&["k1"])), Err("connection refused".into()), Ok(document(&["k1", "k2"]))],
            0,
        ))));
        let keys = FetchedKeys::with_timings(answers.clone(), Duration::from_secs(3600), Duration::ZERO);
        assert!(keys.keys_for("k1").await.is_some_and(|k| k.knows("k1")));
        assert!(keys.keys_for("k1").await.is_some());
        assert_eq!(fetches(&answers), 1, "cached while fresh");
        // An unknown identifier: one fetch, which fails; the last good set is kept.
        let kept = keys.keys_for("k2").await.unwrap();
        assert!(kept.knows("k1") && !kept.knows("k2"));
        assert_eq!(fetches(&answers), 2);
        // Asked again: fetched again, and GitHub's new key is there.
        assert!(keys.keys_for("k2").await.unwrap().knows("k2"));
        assert_eq!(fetches(&answers), 3);
    }

    #[tokio::test]
    async fn made_up_identifiers_and_a_stale_set_cause_one_fetch_a_minute_at_most() {
        let answers = Arc::new(Answers(Mutex::new((vec![Ok(document(&["k1"]))], 0))));
        let keys = FetchedKeys::with_timings(answers.clone(), Duration::ZERO, Duration::from_secs(60));
        assert!(keys.keys_for("k1").await.is_some());
        for n in 0..20 {
            assert!(keys.keys_for(&format!("made-up-{n}")).await.is_some_and(|k| k.knows("k1")));
        }
        // The first unknown identifier fetches once; then none within the minute, however
        // many made-up ones come, and however stale the set is.
        assert_eq!(fetches(&answers), 2, "at most one fetch a minute, whatever the reports say");
        // Never a set: no keys (the route answers 503 for GitHub to retry).
        let down = Arc::new(Answers(Mutex::new((vec![Err("down".into())], 0))));
        assert!(FetchedKeys::new(down).keys_for("k1").await.is_none());
    }
}
