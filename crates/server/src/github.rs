//! GitHub's secret-scanning keys (docs/leaks.md): pinned by the operator's file, or
//! fetched from GitHub's API (or the configured URL) by [`UreqDocument`], for the keyring
//! in `keyward-http` to cache, refresh and keep through an outage.

use std::{future::Future, io::Read as _, pin::Pin, sync::Arc, time::Duration};

use keyward_http::leaks::{FetchedKeys, GitHubKeyring, GitHubKeys, KeysDocument};

use crate::config::{Config, ConfigError};

/// Where GitHub publishes the keys it signs secret-scanning reports with.
pub(crate) const GITHUB_KEYS_URL: &str = "https://api.github.com/meta/public_keys/secret_scanning";
/// The most of an answer read: the document is a few kilobytes.
const MAX_DOCUMENT_BYTES: u64 = 1024 * 1024;

/// The keyring the configuration asks for. A file is read and checked now (a bad file
/// stops the start, not a report); a URL is fetched at the first report.
pub(crate) fn keyring(config: &Config) -> Result<GitHubKeyring, ConfigError> {
    match (&config.github_keys_file, config.github_secret_scanning || config.github_keys_url.is_some()) {
        (Some(_), true) => Err(ConfigError::Invalid(
            "github_keys_file pins GitHub's keys; github_keys_url and github_secret_scanning fetch them: set one"
                .into(),
        )),
        (Some(path), false) => {
            let display = path.display().to_string();
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: display.clone(), source })?;
            let keys = GitHubKeys::from_json(&text)
                .map_err(|e| ConfigError::Invalid(format!("github_keys_file {display}: {e}")))?;
            Ok(keys.into())
        }
        (None, true) => {
            let url = config.github_keys_url.clone().unwrap_or_else(|| GITHUB_KEYS_URL.to_owned());
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError::Invalid(
                    "github_keys_url (KEYWARD_GITHUB_KEYS_URL) must be an http(s) URL".into(),
                ));
            }
            Ok(GitHubKeyring::Fetched(Arc::new(FetchedKeys::new(UreqDocument::new(url)))))
        }
        (None, false) => Ok(GitHubKeyring::Off),
    }
}

/// Fetches the document with ureq (already in the build), on the blocking pool.
struct UreqDocument {
    agent: ureq::Agent,
    url: String,
}

impl UreqDocument {
    fn new(url: String) -> Self {
        let agent = ureq::Agent::config_builder()
            .tls_config(keyward_webhooks::sender::system_tls())
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .user_agent(concat!("Keyward/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self { agent, url }
    }
}

impl KeysDocument for UreqDocument {
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + '_>> {
        let (agent, url) = (self.agent.clone(), self.url.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let response = agent.get(&url).call().map_err(|e| e.to_string())?;
                let status = response.status().as_u16();
                if status != 200 {
                    return Err(format!("{url} answered {status}"));
                }
                let mut text = String::new();
                response
                    .into_body()
                    .into_reader()
                    .take(MAX_DOCUMENT_BYTES)
                    .read_to_string(&mut text)
                    .map_err(|e| e.to_string())?;
                Ok(text)
            })
            .await
            .map_err(|e| format!("the fetch failed: {e}"))?
        })
    }
}
