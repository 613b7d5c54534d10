//! The audit trail of the HTTP API: every management call — reads, failures and denials
//! included — leaves exactly one event in the audit store; verification calls leave none.
//!
//! Use cases report the events they know best (a failed login, a new account key) through
//! the domain's `AuditSink`; inside a request, [`RequestAuditSink`] hands them to the
//! request's trail, and the [`audit_trail`] middleware writes one event per call: the use
//! case's if it reported one, otherwise one derived from the route, the caller and the status.

use std::cell::RefCell;

use actix_web::{
    HttpMessage, HttpRequest, HttpResponse,
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{Method, StatusCode},
    middleware::Next,
    web,
};
use keyward_domain::{
    AccountId, EventId, OsRandom, Store,
    audit::{AuditEvent, AuditResult, AuditSink},
    error::ManageError,
    idempotency::{MAX_KEY_LEN, StoredResponse, body_hash, keeps},
    key::Actor,
    ports::Outcome,
    usage::UsageRecord,
};

use crate::{
    AppState,
    error::ApiError,
    extract::{IMPORT_BODY_LIMIT, read_bounded},
    session::request_context,
};

tokio::task_local! {
    static REQUEST_EVENTS: RefCell<Vec<AuditEvent>>;
}

/// The `AuditSink` the services get. Inside a request it adds the event to the request's
/// trail; outside one (the CLI) it logs it.
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestAuditSink;

impl AuditSink for RequestAuditSink {
    fn record(&self, event: AuditEvent) {
        let mut slot = Some(event);
        let _ = REQUEST_EVENTS.try_with(|events| {
            if let Some(event) = slot.take() {
                events.borrow_mut().push(event);
            }
        });
        if let Some(event) = slot {
            log(&event);
        }
    }
}

fn log(event: &AuditEvent) {
    tracing::info!(
        target: "keyward::audit",
        event_id = %event.id,
        account_id = event.account_id.map(|a| a.to_string()),
        actor = %event.actor,
        action = %event.action,
        resource_type = %event.resource_type,
        resource_id = event.resource_id,
        result = event.result.as_str(),
        request_id = event.context.request_id.map(|r| r.to_string()),
        "audit"
    );
}

/// Who called, once authenticated; set by `session::authorize` for the audit trail.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller {
    pub account: AccountId,
    pub actor: Actor,
}

/// A resource a handler created, which the path does not name (`POST /v1/keys`).
#[derive(Debug, Clone)]
pub(crate) struct CreatedResource(pub String);

pub(crate) fn note_created(req: &HttpRequest, id: impl ToString) {
    req.extensions_mut().insert(CreatedResource(id.to_string()));
}

/// The routes that hash a password (a login, step-up, a password change, a new user's
/// generated password).
fn hashes_passwords(method: &Method, path: &str) -> bool {
    *method == Method::POST
        && matches!(
            path,
            "/v1/auth/login" | "/v1/account/verify-password" | "/v1/account/password" | "/v1/account/users"
        )
}

/// How long a request that hashes waits for its turn before answering 503.
const HASH_TURN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// How much of what a client typed into a path (a path that matched no route, an id) an
/// audit event keeps.
const MAX_AUDITED_PATH_CHARS: usize = 200;

/// Management routes are audited; verification, health and documentation are not.
fn audited(method: &Method, path: &str) -> bool {
    path.starts_with("/v1/")
        && path != "/v1/openapi.json"
        && !(path == "/v1/keys/verify" && method == Method::POST)
        && !(path == "/v1/keys/self" && method == Method::GET)
}

/// The action and resource type of a route.
fn action_of(method: &Method, pattern: Option<&str>) -> (&'static str, &'static str) {
    let m = method.as_str();
    match (m, pattern.unwrap_or_default()) {
        ("GET", "/v1/account") => ("account.read", "account"),
        ("GET", "/v1/keyspaces") => ("keyspace.list", "keyspace"),
        ("POST", "/v1/keyspaces") => ("keyspace.create", "keyspace"),
        ("GET", "/v1/keyspaces/{id}") => ("keyspace.read", "keyspace"),
        ("PATCH", "/v1/keyspaces/{id}") => ("keyspace.update", "keyspace"),
        ("DELETE", "/v1/keyspaces/{id}") => ("keyspace.delete", "keyspace"),
        ("GET", "/v1/keys") => ("key.list", "key"),
        ("POST", "/v1/keys") => ("key.create", "key"),
        ("POST", "/v1/keys/import") => ("key.import", "key"),
        ("GET", "/v1/keys/{id}") => ("key.read", "key"),
        ("PATCH", "/v1/keys/{id}") => ("key.update", "key"),
        ("DELETE", "/v1/keys/{id}") => ("key.revoke", "key"),
        ("POST", "/v1/keys/{id}/rotate") => ("key.rotate", "key"),
        ("POST", "/v1/auth/login") => ("auth.login", "session"),
        ("POST", "/v1/auth/logout") => ("auth.logout", "session"),
        ("GET", "/v1/auth/session") => ("auth.session", "session"),
        ("POST", "/v1/account/verify-password") => ("auth.verify_password", "user"),
        ("POST", "/v1/account/password") => ("auth.password_change", "user"),
        ("GET", "/v1/auth/invitations") => ("user.invitation_list", "user"),
        ("POST", "/v1/auth/invitations/{account_id}/accept") => ("user.invitation_accept", "user"),
        ("DELETE", "/v1/auth/invitations/{account_id}") => ("user.invitation_decline", "user"),
        ("GET", "/v1/account/users") => ("user.list", "user"),
        ("POST", "/v1/account/users") => ("user.create", "user"),
        ("PATCH", "/v1/account/users/{id}") => ("user.update", "user"),
        ("DELETE", "/v1/account/users/{id}") => ("user.remove", "user"),
        ("GET", "/v1/account/keys") => ("account_key.list", "key"),
        ("POST", "/v1/account/keys") => ("account_key.create", "key"),
        ("GET", "/v1/account/keys/{id}") => ("account_key.read", "key"),
        ("PATCH", "/v1/account/keys/{id}") => ("account_key.update", "key"),
        ("DELETE", "/v1/account/keys/{id}") => ("account_key.revoke", "key"),
        ("POST", "/v1/account/keys/{id}/rotate") => ("account_key.rotate", "key"),
        ("GET", "/v1/audit") => ("audit.list", "audit"),
        ("GET", "/v1/keys/{id}/usage") => ("usage.read", "key"),
        ("GET", "/v1/stats") => ("stats.read", "account"),
        _ => ("request", "route"),
    }
}

fn result_of(status: StatusCode) -> AuditResult {
    match status.as_u16() {
        200..=399 => AuditResult::Success,
        401 | 403 | 429 => AuditResult::Denied,
        _ => AuditResult::Failure,
    }
}

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

fn idempotency_key(req: &ServiceRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else { return Ok(None) };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN && k.bytes().all(|b| b.is_ascii_graphic()));
    key.map(|k| Some(k.to_owned())).ok_or_else(|| {
        ApiError::field("Idempotency-Key", format!("must be 1 to {MAX_KEY_LEN} visible ASCII characters"))
    })
}

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
async fn refuse<S: Store>(
    state: &AppState<S>,
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
pub async fn journal<S: Store>(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState<S>>>().cloned() else {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    };
    // The per-IP limit before any other work, on every route of the scope (unknown routes,
    // documentation and health included): a flood from one address costs one limiter
    // decision per request and nothing else.
    if let Err(refusal) = crate::session::limit_ip(&state, req.request()).await {
        state.anonymous_refusals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Ok(refuse(&state, req, refusal, false).await);
    }
    if !audited(req.method(), req.path()) {
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
    let turn = if hashes_passwords(req.method(), req.path()) {
        match state.hasher.reserve(HASH_TURN_DEADLINE).await {
            Some(turn) => Some(turn),
            None => {
                let busy = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "too many password checks are waiting; retry shortly",
                );
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
                let sealed = state.sealer.seal(claim.account, &claim.key, &body, &OsRandom);
                let kept = StoredResponse { status: response.status().as_u16(), sealed_body: sealed };
                let now = state.service.now();
                state
                    .service
                    .store()
                    .complete_idempotency(claim.account, &claim.key, claim.fingerprint, now, &kept)
                    .await?;
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
fn meter_call<S: Store>(
    state: &AppState<S>,
    response: &ServiceResponse<BoxBody>,
    started: (std::time::Instant, time::OffsetDateTime),
) {
    let req = response.request();
    let caller = req.extensions().get::<Caller>().copied();
    let Some(Caller { account, actor: Actor::Key(key_id) }) = caller else {
        return;
    };
    state.meter.record(UsageRecord {
        key_id,
        account_id: account,
        ts: started.1,
        // The route pattern, never the raw path: a path may carry anything a client typed.
        endpoint: req.match_pattern(),
        method: Some(req.method().as_str().to_owned()),
        status_code: Some(response.status().as_u16()),
        response_time_ms: Some(u32::try_from(started.0.elapsed().as_millis()).unwrap_or(u32::MAX)),
        ip: crate::extract::client_ip(req),
        outcome: None,
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

async fn write_audit<S: Store>(state: &AppState<S>, response: &ServiceResponse<BoxBody>, reported: Vec<AuditEvent>) {
    let event = trail_event(state, response.request(), response.status(), reported);
    log(&event);
    if let Err(error) = state.service.store().append_audit(&event).await {
        tracing::error!(%error, event_id = %event.id, "could not write the audit event");
    }
}

/// A failed call's key: kept with its answer when the call executed (a 404, a refusal the
/// retry would meet again), released when it failed before executing or on the server.
async fn settle_failed_claim<S: Store>(state: &AppState<S>, claim: &ClaimedKey, response: &ServiceResponse<BoxBody>) {
    let error = response.response().error().and_then(|e| e.as_error::<ApiError>());
    let status = response.status().as_u16();
    let result = match error.filter(|e| keeps(status, Some(e.code))) {
        Some(error) => {
            let body = serde_json::json!({"error": error.code, "message": error.message}).to_string();
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

fn trail_event<S: Store>(
    state: &AppState<S>,
    req: &HttpRequest,
    status: StatusCode,
    mut reported: Vec<AuditEvent>,
) -> AuditEvent {
    let context = request_context(req);
    let caller = req.extensions().get::<Caller>().copied();
    // A use case's own event says most; it gets the request's context and final word on
    // the result only when the call failed after it (the status is the truth).
    let replayed = req.extensions().get::<Replayed>().is_some();
    if let Some(mut event) = reported.pop().filter(|_| !replayed) {
        event.context = context;
        if !status.is_success() && event.result == AuditResult::Success {
            event.result = result_of(status);
        }
        if event.account_id.is_none() {
            event.account_id = caller.map(|c| c.account);
        }
        return event;
    }
    let (action, resource_type) = action_of(req.method(), req.match_pattern().as_deref());
    let resource_id = req
        .match_info()
        .get("id")
        .map(|id| id.chars().take(MAX_AUDITED_PATH_CHARS).collect())
        .or_else(|| req.extensions().get::<CreatedResource>().map(|c| c.0.clone()));
    let mut metadata = serde_json::Map::new();
    metadata.insert("method".into(), req.method().as_str().into());
    // The route's pattern; a raw path (no route matched) is the client's text, kept short.
    let path = req.match_pattern().unwrap_or_else(|| req.path().chars().take(MAX_AUDITED_PATH_CHARS).collect());
    metadata.insert("path".into(), path.into());
    metadata.insert("status".into(), status.as_u16().into());
    if replayed {
        metadata.insert("idempotent_replayed".into(), true.into());
    }
    let now = state.service.now();
    AuditEvent {
        id: EventId::generate(now, &OsRandom),
        ts: now,
        account_id: caller.map(|c| c.account),
        actor: caller.map_or(Actor::System, |c| c.actor),
        action: action.into(),
        resource_type: resource_type.into(),
        resource_id,
        result: result_of(status),
        context,
        metadata,
    }
}
