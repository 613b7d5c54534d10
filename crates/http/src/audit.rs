//! The audit trail of the HTTP API: every management call — reads, failures and denials
//! included — leaves exactly one event in the audit store; verification calls leave none.
//!
//! Use cases report the events they know best (a failed login, a new account key) through
//! the domain's `AuditSink`; inside a request, [`RequestAuditSink`] hands them to the
//! request's trail, and the journal (`journal.rs`) writes one event per call: the use
//! case's if it reported one, otherwise one derived from the route, the caller and the status.

use std::cell::RefCell;

use actix_web::{HttpMessage, HttpRequest, body::BoxBody, dev::ServiceResponse, http::StatusCode};
use keyward_domain::{
    AccountId, EventId, OsRandom, Store,
    audit::{AuditEvent, AuditResult, AuditSink},
    key::Actor,
    ratelimit::Admission,
};

use crate::{AppState, extract::request_context, idempotency::Replayed};

tokio::task_local! {
    pub(crate) static REQUEST_EVENTS: RefCell<Vec<AuditEvent>>;
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

pub(crate) fn log(event: &AuditEvent) {
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

/// How much of what a client typed into a path (a path that matched no route, an id) an
/// audit event keeps.
const MAX_AUDITED_PATH_CHARS: usize = 200;

fn result_of(status: StatusCode) -> AuditResult {
    match status.as_u16() {
        200..=399 => AuditResult::Success,
        401 | 403 | 429 => AuditResult::Denied,
        _ => AuditResult::Failure,
    }
}

pub(crate) async fn write_audit<S: Store, L: Admission>(
    state: &AppState<S, L>,
    response: &ServiceResponse<BoxBody>,
    reported: Vec<AuditEvent>,
) {
    let event = trail_event(state, response.request(), response.status(), reported);
    log(&event);
    if let Err(error) = state.service.store().append_audit(&event).await {
        tracing::error!(%error, event_id = %event.id, "could not write the audit event");
    }
}

pub(crate) fn trail_event<S: Store, L: Admission>(
    state: &AppState<S, L>,
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
    let action = crate::routes::action_of(req.method(), req.match_pattern().as_deref());
    let resource_id = req
        .match_info()
        .get("id")
        .map(|id| id.chars().take(MAX_AUDITED_PATH_CHARS).map(printable).collect())
        .or_else(|| req.extensions().get::<CreatedResource>().map(|c| c.0.clone()));
    let mut metadata = serde_json::Map::new();
    metadata.insert("method".into(), req.method().as_str().into());
    // The route's pattern; a raw path (no route matched) is the client's text, kept short.
    let path =
        req.match_pattern().unwrap_or_else(|| req.path().chars().take(MAX_AUDITED_PATH_CHARS).map(printable).collect());
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
        action: action.as_str().into(),
        resource_type: action.resource_type().into(),
        resource_id,
        result: result_of(status),
        context,
        metadata,
    }
}
/// A client's character as the trail keeps it: a control character (which PostgreSQL's
/// text may refuse, and a terminal may obey) becomes U+FFFD.
fn printable(c: char) -> char {
    if c.is_control() { char::REPLACEMENT_CHARACTER } else { c }
}
