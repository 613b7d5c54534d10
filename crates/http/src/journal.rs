//! The journal: every management call as one unit of work. The per-IP limit first, then
//! the whole body (bounded, with a deadline), the `Idempotency-Key`, a turn at the password
//! hasher for the routes that hash — all before the unit begins, so nothing a slow or
//! flooding client does holds a transaction slot — then the handler, its audit event and
//! its replayable response, committed together.

use std::cell::RefCell;

use actix_web::{
    HttpMessage, HttpResponse,
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{
        Method,
        header::{CACHE_CONTROL, HeaderValue},
    },
    middleware::Next,
    web,
};
use keyward_domain::{
    Store, error::ManageError, idempotency::body_hash, key::Actor, ports::Outcome, ratelimit::Admission,
    usage::UsageRecord,
};

use crate::{
    AppState,
    audit::{Caller, REQUEST_EVENTS, log, trail_event, write_audit},
    error::{ApiError, ErrorCode},
    extract::{IMPORT_BODY_LIMIT, read_bounded},
    idempotency::{ClaimedKey, IdempotencyRequest, idempotency_key, keep_response, settle_failed_claim},
};

/// How long a request that hashes waits for its turn before answering 503.
const HASH_TURN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads the whole body — bounded by the largest any route takes, and by
/// `BODY_READ_TIMEOUT` — and puts it back for the handler, whose own extractor then applies
/// the route's limit. Done before the unit of work begins, so a client that sends its body
/// slowly holds no transaction slot and no pooled connection.
async fn buffer_body(req: &mut ServiceRequest) -> Result<web::Bytes, ApiError> {
    let mut payload = req.take_payload();
    let body = read_bounded(req.headers(), &mut payload, IMPORT_BODY_LIMIT).await?;
    req.set_payload(actix_web::dev::Payload::from(body.clone()));
    Ok(body)
}

/// An answer given before the call ran (its body could not be read, its Idempotency-Key is
/// malformed); `audit` says whether it leaves an audit event.
async fn refuse<S: Store, L: Admission>(
    state: &AppState<S, L>,
    req: ServiceRequest,
    error: ApiError,
    audit: bool,
) -> ServiceResponse<BoxBody> {
    let (request, _) = req.into_parts();
    let response = ServiceResponse::new(request, HttpResponse::from_error(error));
    if audit {
        write_audit(state, &response, Vec::new()).await;
    }
    response
}

/// Every management call, as one unit of work: the handler's changes, the call's audit
/// event and, with an `Idempotency-Key`, the response to replay, commit together — or, when
/// the call fails, nothing of it stays but its audit event (a failure is audited too).
///
/// No cache, shared or private, may keep a management answer (RFC 9111 `no-store`): many
/// carry a secret shown once — a key's plaintext, a webhook secret, an invitation's link —
/// replays of them included, and the rest are account data. The verification routes,
/// outside this scope, carry none and are left alone.
pub async fn journal<S: Store, L: Admission>(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let mut response = journal_call::<S, L>(req, next).await?;
    let headers = response.headers_mut();
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(response)
}

async fn journal_call<S: Store, L: Admission>(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState<S, L>>>().cloned() else {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    };
    // The per-IP limit before any other work, on every route of the scope (unknown routes,
    // documentation and health included): a flood from one address costs one limiter
    // decision per request and nothing else.
    if let Err(refusal) = crate::session::limit_ip(&state, req.request()).await {
        state.anonymous_refusals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Ok(refuse(&state, req, refusal, false).await);
    }
    if !crate::routes::audited(req.path()) {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    }
    let started = (std::time::Instant::now(), state.service.now());
    let body = match buffer_body(&mut req).await {
        Ok(body) => body,
        // Nobody is known yet: an anonymous client's slow or oversized body is not worth an
        // audit row (it would let anyone write them at will).
        Err(error) => return Ok(refuse(&state, req, error, false).await),
    };
    if req.method() == Method::POST {
        match idempotency_key(&req) {
            Ok(Some(key)) => {
                req.extensions_mut().insert(IdempotencyRequest { key, body_hash: body_hash(&body) });
            }
            Ok(None) => {}
            Err(error) => return Ok(refuse(&state, req, error, true).await),
        }
    }

    // Routes that hash a password take their turn at the hasher before their unit of work:
    // a login flood waits for turns holding nothing, and revocation always finds a slot.
    let turn = if crate::routes::hashes_password(req.method(), req.path(), req.match_pattern().as_deref()) {
        match state.hasher.reserve(HASH_TURN_DEADLINE).await {
            Some(turn) => Some(turn),
            None => {
                let busy = ApiError::new(ErrorCode::Unavailable, "too many password checks are waiting; retry shortly");
                return Ok(refuse(&state, req, busy, false).await);
            }
        }
    } else {
        None
    };
    let store = state.service.store().clone();
    let unit = store.atomically(async {
        let (response, reported) = REQUEST_EVENTS
            .scope(RefCell::new(Vec::new()), async move {
                let response = next.call(req).await;
                (response, REQUEST_EVENTS.with(|events| events.take()))
            })
            .await;
        let response = match response {
            Ok(response) => response.map_into_boxed_body(),
            Err(error) => return Outcome::Rollback(Err(error)),
        };
        if !response.status().is_success() {
            return Outcome::Rollback(Ok((response, reported, false)));
        }
        // Success: the event and the response to replay join the handler's changes.
        let event = trail_event(&state, response.request(), response.status(), reported);
        let (response, body) = match read_body(response).await {
            Ok(read) => read,
            Err(response) => return Outcome::Rollback(Ok((response, Vec::new(), false))),
        };
        let stored = async {
            state.service.store().append_audit(&event).await?;
            log(&event);
            let claim = response.request().extensions().get::<ClaimedKey>().cloned();
            if let Some(claim) = claim {
                keep_response(&state, &claim, response.status(), &body).await?;
            }
            Ok::<_, keyward_domain::ports::StorageError>(())
        };
        match stored.await {
            Ok(()) => Outcome::Commit(Ok((response, Vec::new(), true))),
            Err(error) => {
                tracing::error!(%error, "could not record the call; its changes are rolled back");
                let (request, _) = response.into_parts();
                let failed = ServiceResponse::new(
                    request,
                    HttpResponse::from_error(ApiError::from(ManageError::Storage(error))),
                );
                Outcome::Rollback(Ok((failed, Vec::new(), false)))
            }
        }
    });
    let outcome = match turn {
        Some(turn) => turn.run(unit).await,
        None => unit.await,
    };
    let (response, reported, committed) = match outcome {
        Ok(Ok(done)) => done,
        Ok(Err(error)) => return Err(error),
        Err(error) => {
            // The unit of work could not even begin (storage down); the request never ran.
            let stand_in = actix_web::test::TestRequest::default().to_http_request();
            return Ok(ServiceResponse::new(
                stand_in,
                HttpResponse::from_error(ApiError::from(ManageError::Storage(error))),
            ));
        }
    };
    meter_call(&state, &response, started);
    if !committed {
        // Rolled back: audit the failure on its own — when somebody is known: an
        // authenticated caller, or a use case that reported its event (a failed login).
        // An anonymous 401, 404, 405 or malformed body is counted, not audited: anyone can
        // send those at will, and each would be a row kept for years.
        let anonymous = reported.is_empty() && response.request().extensions().get::<Caller>().is_none();
        if anonymous {
            state.anonymous_refusals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        } else {
            write_audit(&state, &response, reported).await;
        }
        let claim = response.request().extensions().get::<ClaimedKey>().cloned();
        if let Some(claim) = claim {
            settle_failed_claim(&state, &claim, &response).await;
        }
    }
    Ok(response)
}

/// Management calls made with an account or temporary key are metered like verifications
/// (endpoint, method, status, response time); calls from a session are not.
fn meter_call<S: Store, L: Admission>(
    state: &AppState<S, L>,
    response: &ServiceResponse<BoxBody>,
    started: (std::time::Instant, time::OffsetDateTime),
) {
    let req = response.request();
    let caller = req.extensions().get::<Caller>().copied();
    let Some(Caller { account, actor: Actor::Key(key_id) }) = caller else {
        return;
    };
    state.meter.record(UsageRecord {
        key_id: Some(key_id),
        account_id: account,
        ts: started.1,
        // The route pattern, never the raw path: a path may carry anything a client typed.
        endpoint: req.match_pattern(),
        method: Some(req.method().as_str().to_owned()),
        status_code: Some(response.status().as_u16()),
        response_time_us: Some(keyward_domain::usage::micros(started.0.elapsed())),
        ip: crate::extract::client_ip(req),
        outcome: None,
        quota_spent: None,
    });
}

async fn read_body(
    response: ServiceResponse<BoxBody>,
) -> Result<(ServiceResponse<BoxBody>, web::Bytes), ServiceResponse<BoxBody>> {
    let (request, response) = response.into_parts();
    let (head, body) = response.into_parts();
    match actix_web::body::to_bytes(body).await {
        Ok(bytes) => Ok((ServiceResponse::new(request, head.set_body(BoxBody::new(bytes.clone()))), bytes)),
        Err(_) => Err(ServiceResponse::new(request, HttpResponse::from_error(ApiError::internal()))),
    }
}
