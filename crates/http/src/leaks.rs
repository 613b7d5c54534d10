//! Leak response over HTTP (docs/leaks.md): GitHub's secret-scanning partner reports, public
//! reports of keys found in the wild, and a key revoking itself.
//!
//! None of these routes is a management call: they sit outside the journal, so an anonymous
//! report writes no audit row of its own. What a report changes is audited by the use case,
//! in the same unit of work as the change, and a report that changes nothing writes nothing.

mod github;
mod keyring;

pub use github::{GitHubKeys, InvalidGitHubKeys};
pub use keyring::{Checked, FetchedKeys, GitHubKeyring, KEYS_TTL, KeysDocument, REFETCH_AT_MOST_EVERY};

use actix_web::{HttpRequest, HttpResponse, web};
use keyward_domain::{
    Store,
    error::ManageError,
    key_service::{LeakFinding, LeakReporter, MAX_LEAK_REPORT},
    ratelimit::Admission,
    throttle::client_subnet,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    AppState,
    dto::ErrorEnvelope,
    dto::KeyResponse,
    error::{ApiError, ErrorCode},
    extract::{Json, client_ip, credential, read_bounded, request_context},
    limits::enforce_cost,
};

/// The largest GitHub report read: 1,000 tokens with their URLs.
const GITHUB_BODY_LIMIT: usize = 1024 * 1024;
/// The longest string a public report may hold: longer than any key.
const MAX_REPORTED_LEN: usize = 512;
/// The most strings one public report may hold (each may cost a lookup). More: 413, and
/// nothing of the report is looked at.
pub const MAX_PUBLIC_REPORT: usize = 100;

/// One token of a GitHub secret-scanning report. Its `Debug` leaves the token out.
#[derive(Deserialize, ToSchema)]
pub struct GitHubTokenReport {
    /// The string GitHub found.
    pub token: String,
    /// The token type registered with GitHub.
    #[serde(rename = "type", default)]
    pub token_type: Option<String>,
    /// Where it was found.
    #[serde(default)]
    pub url: Option<String>,
    /// The kind of place (`content`, `commit`, `pull_request_comment`, …).
    #[serde(default)]
    pub source: Option<String>,
}

impl std::fmt::Debug for GitHubTokenReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubTokenReport")
            .field("token", &"<redacted>")
            .field("token_type", &self.token_type)
            .field("url", &self.url)
            .field("source", &self.source)
            .finish()
    }
}

/// GitHub's answer format: a label per reported token, named by its SHA-256.
#[derive(Debug, Serialize, ToSchema)]
pub struct GitHubTokenLabel {
    /// Hex SHA-256 of the reported token.
    pub token_hash: String,
    pub token_type: String,
    /// `true_positive`: a key Keyward issued; `false_positive`: anything else.
    #[schema(example = "true_positive")]
    pub label: &'static str,
}

/// `POST /v1/leaks/revoke`. Its `Debug` shows how many strings, not which.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublicLeakReport {
    /// Strings found in public, up to 100 of at most 512 bytes; those that are live keys
    /// are revoked.
    #[schema(max_items = 100, example = json!(["kw_live_3HnW8zcB1fQ2LkVd9sXyTq0aPm7Rb5EoJ4wZ1x"]))]
    pub keys: Vec<String>,
}

impl std::fmt::Debug for PublicLeakReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicLeakReport").field("keys", &self.keys.len()).finish()
    }
}

/// The same answer whatever the report held.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicLeakAnswer {
    /// How many strings the report held.
    pub received: usize,
}

#[utoipa::path(post, path = "/v1/leaks/github", tag = "leaks",
    request_body(content = Vec<GitHubTokenReport>, example = json!([{"token": "kw_live_3HnW8zcB1fQ2LkVd9sXyTq0aPm7Rb5EoJ4wZ1x", "type": "keyward_live_key", "url": "https://github.com/octo/app/blob/abc/config.yml", "source": "content"}])),
    responses((status = 200, body = Vec<GitHubTokenLabel>), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
/// GitHub's secret-scanning partner endpoint: a signed report of tokens found in public.
/// Each key of ours is handled by its keyspace's leak policy; the answer labels each token
/// and says nothing else. The signature travels in two headers: `Github-Public-Key-Identifier`
/// (the key GitHub signed with, one of `KEYWARD_GITHUB_KEYS_FILE`) and
/// `Github-Public-Key-Signature` (base64 ECDSA P-256 SHA-256 signature of the raw body).
pub async fn github_report<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    crate::session::limit_ip(&state, &req).await?;
    if state.github_keys.is_off() {
        return Err(ApiError::new(ErrorCode::NotFound, "secret-scanning reports are not configured (docs/leaks.md)"));
    }
    let body = read_bounded(req.headers(), &mut payload, GITHUB_BODY_LIMIT).await?;
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let (Some(identifier), Some(signature)) =
        (header("Github-Public-Key-Identifier"), header("Github-Public-Key-Signature"))
    else {
        return Err(ApiError::new(ErrorCode::InvalidSignature, "the report is not signed"));
    };
    match state.github_keys.check(identifier, signature, &body).await {
        Checked::Genuine => {}
        Checked::Forged => {
            return Err(ApiError::new(ErrorCode::InvalidSignature, "the signature does not match the report"));
        }
        // GitHub retries what does not succeed: a report is never refused for our outage.
        Checked::NoKeys => {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                "GitHub's public keys could not be fetched yet; the report can be sent again",
            ));
        }
    }
    let reports: Vec<GitHubTokenReport> = serde_json::from_slice(&body)
        .map_err(|_| ApiError::new(ErrorCode::InvalidJson, "the report is not a JSON array of tokens"))?;
    if reports.len() > MAX_LEAK_REPORT {
        return Err(ManageError::from(keyward_domain::FieldErrors::single(
            "body",
            format!("at most {MAX_LEAK_REPORT} tokens per report"),
        ))
        .into());
    }
    let context = request_context(&req);
    // The body's digest, not the signature's: an ECDSA signature has a second valid form
    // (s and n - s), so a replay could come with a signature never seen.
    let mut digest = [0u8; 32];
    digest.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &body).as_ref());
    let replayed = state.service.report_seen(&digest).await.map_err(ManageError::from)?;
    if replayed {
        tracing::info!(tokens = reports.len(), "a GitHub secret-scanning report seen before: answered, nothing done");
    } else {
        tracing::info!(tokens = reports.len(), "a signed GitHub secret-scanning report");
    }
    let mut labels = Vec::with_capacity(reports.len());
    for report in reports {
        let finding = if replayed {
            state.service.recognise_leak(&report.token).await
        } else {
            let reporter = LeakReporter::Scanner { name: "github", source: report.source, url: report.url };
            state.service.report_leak(&report.token, &reporter, &context).await
        }
        .map_err(ManageError::from)?;
        labels.push(GitHubTokenLabel {
            token_hash: hex::encode(ring::digest::digest(&ring::digest::SHA256, report.token.as_bytes())),
            token_type: report.token_type.unwrap_or_default(),
            label: match finding {
                LeakFinding::Key => "true_positive",
                LeakFinding::NotAKey => "false_positive",
            },
        });
    }
    if !replayed {
        state.service.report_done(&digest).await.map_err(ManageError::from)?;
    }
    Ok(HttpResponse::Ok().json(labels))
}

#[utoipa::path(post, path = "/v1/leaks/revoke", tag = "leaks",
    request_body(content = PublicLeakReport),
    responses((status = 202, body = PublicLeakAnswer), (status = 400, body = ErrorEnvelope), (status = 429, body = ErrorEnvelope)))]
/// Report strings found in public, without an account: those that are live keys are
/// revoked. The answer is the same whatever they were, and a string that is not a key
/// (checksum first) costs no lookup. Up to 100 strings (more, or a body over 64 KiB: 413,
/// and nothing is looked at); each spends one of the client's budget (per address, per
/// /64 for IPv6).
pub async fn public_report<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    body: Json<PublicLeakReport>,
) -> Result<HttpResponse, ApiError> {
    crate::session::limit_ip(&state, &req).await?;
    let report = body.into_inner()?;
    if report.keys.len() > MAX_PUBLIC_REPORT {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("at most {MAX_PUBLIC_REPORT} strings per report; nothing of this one was looked at"),
        ));
    }
    // The budget is counted in strings, which are what costs: a report of 100 spends 100.
    if let Some(ip) = client_ip(&req) {
        let subject = format!("leak:{}", client_subnet(ip));
        let rules = state.api_limits.leak_report_rules();
        let cost = report.keys.len().max(1) as u64;
        enforce_cost(&*state.limits, &req, "leak_reports", subject.as_bytes(), &rules, cost, state.service.now())
            .await?;
    }
    let mut errors = keyward_domain::FieldErrors::new();
    if let Some(i) = report.keys.iter().position(|k| k.len() > MAX_REPORTED_LEN) {
        errors.push(format!("keys[{i}]"), format!("at most {MAX_REPORTED_LEN} bytes"));
    }
    errors.into_result().map_err(ManageError::from)?;
    let context = request_context(&req);
    for key in &report.keys {
        state.service.report_leak(key, &LeakReporter::Public, &context).await.map_err(ManageError::from)?;
    }
    Ok(HttpResponse::Accepted().json(PublicLeakAnswer { received: report.keys.len() }))
}

#[utoipa::path(post, path = "/v1/keys/self/revoke", tag = "keys",
    responses((status = 200, body = KeyResponse), (status = 401, body = ErrorEnvelope)))]
/// Revokes the key that authenticates the request, for good: what a customer who finds
/// their own key exposed does, without an account login. A disabled key may revoke itself.
pub async fn self_revoke<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    _: crate::session::CsrfChecked,
) -> Result<web::Json<KeyResponse>, ApiError> {
    crate::session::limit_ip(&state, &req).await?;
    let credential = credential(&req)?.ok_or_else(ApiError::unauthorized)?;
    let context = request_context(&req);
    let key = state.service.self_revoke(&credential.key, credential.basic_account, &context, &*state.limits).await?;
    Ok(web::Json(KeyResponse::new(&key, state.service.now())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reports_debug_shows_no_token() {
        let token = "kw_live_3HnW8zcB1fQ2LkVd9sXyTq0aPm7Rb5EoJ4wZ1x";
        let github = GitHubTokenReport { token: token.into(), token_type: None, url: Some("u".into()), source: None };
        let public = PublicLeakReport { keys: vec![token.into()] };
        for debug in [format!("{github:?}"), format!("{public:?}")] {
            assert!(!debug.contains("3HnW8zcB"), "{debug}");
        }
    }
}
