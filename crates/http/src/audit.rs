//! The audit trail of the HTTP API: every management call — reads, failures and denials
//! included — leaves exactly one event in the audit store; verification calls leave none.
//!
//! Use cases report the events they know best (a failed login, a new account key) through
//! the domain's `AuditSink`; inside a request, [`RequestAuditSink`] hands them to the
//! request's trail, and the [`audit_trail`] middleware writes one event per call: the use
//! case's if it reported one, otherwise one derived from the route, the caller and the status.

use std::cell::RefCell;

use actix_web::{
    HttpMessage, HttpRequest,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::{Method, StatusCode},
    middleware::Next,
    web,
};
use keyward_domain::{
    AccountId, EventId, OsRandom, Store,
    audit::{AuditEvent, AuditResult, AuditSink},
    key::Actor,
};

use crate::{AppState, session::request_context};

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

/// Writes one audit event for every management call.
pub async fn audit_trail<S: Store>(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if !audited(req.method(), req.path()) {
        return next.call(req).await;
    }
    let state = req.app_data::<web::Data<AppState<S>>>().cloned();
    let (response, reported) = REQUEST_EVENTS
        .scope(RefCell::new(Vec::new()), async move {
            let response = next.call(req).await;
            (response, REQUEST_EVENTS.with(|events| events.take()))
        })
        .await;
    let response = response?;
    if let Some(state) = state {
        let event = trail_event(&state, response.request(), response.status(), reported);
        log(&event);
        if let Err(error) = state.service.store().append_audit(&event).await {
            tracing::error!(%error, event_id = %event.id, "could not write the audit event");
        }
    }
    Ok(response)
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
    if let Some(mut event) = reported.pop() {
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
        .map(str::to_owned)
        .or_else(|| req.extensions().get::<CreatedResource>().map(|c| c.0.clone()));
    let mut metadata = serde_json::Map::new();
    metadata.insert("method".into(), req.method().as_str().into());
    metadata.insert("path".into(), req.match_pattern().unwrap_or_else(|| req.path().to_owned()).into());
    metadata.insert("status".into(), status.as_u16().into());
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
