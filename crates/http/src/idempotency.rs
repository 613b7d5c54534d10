//! Idempotent management calls (SPEC §4): an `Idempotency-Key` on a POST is claimed once
//! the caller is known, and the call's response is kept (sealed) to replay to a retry.
//! The journal reads the header and settles the claim; `session::authorize` claims.

use actix_web::{
    HttpMessage, HttpRequest,
    body::BoxBody,
    dev::{ServiceRequest, ServiceResponse},
    http::StatusCode,
};
use keyward_domain::{
    AccountId, OsRandom, Store,
    error::ManageError,
    idempotency::{Claim, MAX_KEY_LEN, StoredResponse, fingerprint, keeps},
    key_service::Principal,
    ratelimit::Admission,
};

use crate::{AppState, error::ApiError, error::ErrorCode};

/// An `Idempotency-Key` on a POST, with the hash of the body it came with.
#[derive(Debug, Clone)]
pub(crate) struct IdempotencyRequest {
    pub key: String,
    pub body_hash: [u8; 32],
}

/// A key this request claimed (`session::authorize`), to complete or release at the end.
#[derive(Debug, Clone)]
pub(crate) struct ClaimedKey {
    pub account: AccountId,
    pub key: String,
    pub fingerprint: [u8; 32],
}

/// A response replayed from an idempotency key: audited, never stored again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Replayed;

pub(crate) fn idempotency_key(req: &ServiceRequest) -> Result<Option<String>, ApiError> {
    req.headers().get("idempotency-key").map(check_idempotency_key).transpose()
}

/// An `Idempotency-Key` header's value as the key it names: 1 to [`MAX_KEY_LEN`] visible
/// ASCII characters. A parser of outside input, fuzzed (`fuzz/fuzz_targets/idempotency_key.rs`).
pub fn check_idempotency_key(value: &actix_web::http::header::HeaderValue) -> Result<String, ApiError> {
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN && k.bytes().all(|b| b.is_ascii_graphic()));
    key.map(str::to_owned).ok_or_else(|| {
        ApiError::field("Idempotency-Key", format!("must be 1 to {MAX_KEY_LEN} visible ASCII characters"))
    })
}

/// With an `Idempotency-Key`, claims the key for this request — after authentication and
/// limits, so a request refused before executing never holds a key — or answers with what
/// the key already holds: the stored response (replayed as sent), 409 while the first request
/// runs, 422 when the key was used for a different request.
pub(crate) async fn claim<S: Store, L: Admission>(
    state: &AppState<S, L>,
    req: &HttpRequest,
    principal: &Principal,
    now: time::OffsetDateTime,
) -> Result<(), ApiError> {
    let Some(request) = req.extensions().get::<IdempotencyRequest>().cloned() else { return Ok(()) };
    let account = principal.account_id;
    let actor = principal.actor().to_string();
    let print = fingerprint(req.method().as_str(), req.path(), &request.body_hash, &actor);
    let in_use = || {
        ApiError::new(
            ErrorCode::IdempotencyKeyInUse,
            "a request with this Idempotency-Key is still running; retry shortly",
        )
    };
    let reused = || {
        ApiError::new(
            ErrorCode::IdempotencyKeyReused,
            "this Idempotency-Key was used for a different request; use a new key",
        )
    };
    let claim = state
        .service
        .store()
        .claim_idempotency(account, &request.key, print, now)
        .await
        .map_err(ManageError::Storage)?;
    match claim {
        Claim::Claimed => {
            req.extensions_mut().insert(ClaimedKey { account, key: request.key, fingerprint: print });
            Ok(())
        }
        Claim::InFlight { .. } => Err(in_use()),
        Claim::Completed { fingerprint: stored, .. } if stored != print => Err(reused()),
        Claim::Completed { response, .. } => {
            let body = state.sealer.open(account, &request.key, &response.sealed_body).map_err(|_| in_use())?;
            req.extensions_mut().insert(Replayed);
            let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK);
            if status.is_success() {
                return Err(ApiError::replaying(status, body.into()));
            }
            // A kept refusal: the same error again, under this request's id.
            let stored: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let code = stored["error"].as_str().and_then(ErrorCode::parse).unwrap_or(ErrorCode::Internal);
            Err(ApiError { status, ..ApiError::new(code, stored["message"].as_str().unwrap_or_default()) })
        }
    }
}

/// A successful call's response, kept for replay under the key it claimed (in the call's
/// unit of work).
pub(crate) async fn keep_response<S: Store, L: Admission>(
    state: &AppState<S, L>,
    claim: &ClaimedKey,
    status: StatusCode,
    body: &[u8],
) -> Result<(), keyward_domain::ports::StorageError> {
    let sealed = state.sealer.seal(claim.account, &claim.key, body, &OsRandom);
    let kept = StoredResponse { status: status.as_u16(), sealed_body: sealed };
    let now = state.service.now();
    state.service.store().complete_idempotency(claim.account, &claim.key, claim.fingerprint, now, &kept).await
}

/// A failed call's key: kept with its answer when the call executed (a 404, a refusal the
/// retry would meet again), released when it failed before executing or on the server.
pub(crate) async fn settle_failed_claim<S: Store, L: Admission>(
    state: &AppState<S, L>,
    claim: &ClaimedKey,
    response: &ServiceResponse<BoxBody>,
) {
    let error = response.response().error().and_then(|e| e.as_error::<ApiError>());
    let status = response.status().as_u16();
    let result = match error.filter(|e| keeps(status, Some(e.code.as_str()))) {
        Some(error) => {
            let body = serde_json::json!({"error": error.code.as_str(), "message": error.message}).to_string();
            let sealed = state.sealer.seal(claim.account, &claim.key, body.as_bytes(), &OsRandom);
            let kept = StoredResponse { status, sealed_body: sealed };
            state
                .service
                .store()
                .complete_idempotency(claim.account, &claim.key, claim.fingerprint, state.service.now(), &kept)
                .await
        }
        None => state.service.store().release_idempotency(claim.account, &claim.key).await,
    };
    if let Err(error) = result {
        tracing::error!(%error, "could not settle the idempotency key of a failed call");
    }
}
