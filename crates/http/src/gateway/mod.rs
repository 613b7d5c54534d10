//! Gateways (issue #31, docs/gateways.md): Keyward as the external authorizer of a
//! reverse proxy — nginx's `auth_request`, Caddy's `forward_auth`, Traefik's ForwardAuth,
//! Envoy's HTTP `ext_authz` — at `/v1/forward-auth/{keyspace_id}` (any method, no body
//! read; Envoy appends the original path), and the keyspace's route rules that decide what
//! a key needs (`GET`/`PUT /v1/keyspaces/{id}/routes`).
//!
//! An allowed request is answered `200` with the key's identity in headers the gateway
//! copies to the upstream; a refused one with 401, 403 or 429, the error envelope, and
//! `X-Keyward-Code` — the verification code, for nginx, which honours only 401 and 403 from
//! `auth_request` and maps the code to a 429 itself. A check is a verification: metered and
//! counted like `POST /v1/keys/verify`, with nothing written on the way.

pub mod dto;

use actix_web::{
    HttpRequest, HttpResponse,
    http::header::{self, HeaderName, HeaderValue},
    web,
};
use base64::Engine as _;
use keyward_domain::{
    KeyspaceId, Store, VerifiableKey, VerifyCode,
    gateway::{Gate, normalize_path},
    key_service::{ForwardRequest, VerifyOutcome},
    ratelimit::Admission,
};

pub use dto::*;

use crate::{
    AppState,
    dto::ErrorEnvelope,
    error::{ApiError, ErrorCode},
    extract::{Json, client_ip, credential},
    session::principal,
};

type Result<T, E = ApiError> = std::result::Result<T, E>;

pub use crate::routes::FORWARD_AUTH_PREFIX;

/// The methods the forward-auth routes answer: a gateway asks with the client's own.
pub const FORWARD_AUTH_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

const CODE: HeaderName = HeaderName::from_static("x-keyward-code");
const KEY_ID: HeaderName = HeaderName::from_static("x-keyward-key-id");
const OWNER_ID: HeaderName = HeaderName::from_static("x-keyward-owner-id");
const KEYSPACE_ID: HeaderName = HeaderName::from_static("x-keyward-keyspace-id");
const SCOPES: HeaderName = HeaderName::from_static("x-keyward-scopes");
const META: HeaderName = HeaderName::from_static("x-keyward-meta");

/// A gateway's check: may the request it is about to proxy pass? The client's key is read
/// as verification reads it (Bearer, `X-API-Key`, Basic) or, if the keyspace names one,
/// from a query parameter of the original URI; the original method and URI from
/// `X-Forwarded-Method` / `X-Forwarded-Uri` (Traefik, Caddy) or `X-Original-Method` /
/// `X-Original-URI` (nginx); the client's address from the connection, or from
/// `X-Forwarded-For` / `X-Real-IP` when the connection comes from a trusted proxy.
/// Never reads a body.
#[utoipa::path(method(get, head, post, put, patch, delete, options), path = "/v1/forward-auth/{id}", tag = "gateways",
    params(("id" = String, Path, description = "The keyspace whose keys the gateway accepts")),
    responses((status = 200, description = "Allowed: the key's identity in X-Keyward-Key-Id, X-Keyward-Owner-Id, X-Keyward-Keyspace-Id, X-Keyward-Scopes and X-Keyward-Meta (its metadata, compact JSON, base64url); RateLimit and RateLimit-Policy"),
        (status = 401, body = ErrorEnvelope, description = "No usable key: missing, malformed, unknown, of another keyspace, expired or revoked (`X-Keyward-Code`, `WWW-Authenticate`)"),
        (status = 403, body = ErrorEnvelope, description = "The key may not pass here: a scope, its IP allowlist, disabled, or the route's default (`X-Keyward-Code`)"),
        (status = 404, body = ErrorEnvelope, description = "No such keyspace"),
        (status = 429, body = ErrorEnvelope, description = "The key's rate limit or quota (`X-Keyward-Code`, `Retry-After`)")))]
pub async fn forward_auth<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    check(&state, &req, &id, None).await.unwrap_or_else(HttpResponse::from_error)
}

/// The check of `/v1/forward-auth/{id}` with the original path appended, as Envoy's HTTP
/// `ext_authz` sends it (`path_prefix`); the query is the original one.
#[utoipa::path(method(get, head, post, put, patch, delete, options), path = "/v1/forward-auth/{id}/{path}", tag = "gateways",
    params(("id" = String, Path, description = "The keyspace whose keys the gateway accepts"),
        ("path" = String, Path, description = "The original path, as Envoy's `ext_authz` appends it to `path_prefix`")),
    responses((status = 200, description = "Allowed, as `/v1/forward-auth/{id}`"),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 429, body = ErrorEnvelope)))]
pub async fn forward_auth_path<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    params: web::Path<(String, String)>,
) -> HttpResponse {
    let (id, path) = params.into_inner();
    check(&state, &req, &id, Some(&path)).await.unwrap_or_else(HttpResponse::from_error)
}

/// The check itself; `tail` is the original path of an Envoy-style request.
async fn check<S: Store, L: Admission>(
    state: &AppState<S, L>,
    req: &HttpRequest,
    id: &str,
    tail: Option<&str>,
) -> Result<HttpResponse> {
    let started = std::time::Instant::now();
    let keyspace: KeyspaceId = id.parse().map_err(|_| ApiError::not_found())?;
    let gate = state.service.gate(keyspace).await?;
    // Envoy's original request is ours: its method, the rest of our path, our query. Any
    // header claiming otherwise is the client's, passed on.
    let rebuilt;
    let original = match tail {
        Some(tail) => {
            rebuilt = match req.query_string() {
                "" => format!("/{tail}"),
                query => format!("/{tail}?{query}"),
            };
            Ok((req.method().as_str(), rebuilt.as_str()))
        }
        None => original_request(req),
    };
    let ip = client_ip(req);
    let Ok((method, uri)) = original else {
        // The two conventions disagree: one of them is the client's own header, passed on
        // by a proxy that sets only the other. Refused, whatever either says.
        return Ok(unmatchable(
            state,
            "the original method or URI arrived twice, differently (X-Forwarded-* and X-Original-*)",
        ));
    };
    let Ok(path) = normalize_path(uri) else {
        // Not a path that can be compared safely with the rules: refused, as a route no
        // rule opens.
        return Ok(unmatchable(state, "the original URI's path cannot be compared safely with the route rules"));
    };
    let presented = credential(req).ok().flatten();
    // A Basic user name binds the key to that account.
    let presented = presented.filter(|c| c.basic_account.is_none_or(|account| account == gate.account_id));
    let from_query = match (&presented, gate.routes.query_parameter.as_deref()) {
        (None, Some(name)) => query_key(uri, name),
        _ => None,
    };
    let key = presented.as_ref().map(|c| c.key.expose_secret()).or(from_query.as_deref());
    let method_label = valid_method(method);
    let request = ForwardRequest { key, method: method_label.unwrap_or(""), path: &path, ip };
    let outcome = state.service.forward_auth(&gate, request, &*state.limits).await?;
    state.instruments.verification(outcome.code);
    if let Some(decision) = outcome.ratelimit {
        crate::limits::note(req, "key", decision, state.service.now());
    }
    let answer = match outcome.code {
        VerifyCode::Valid => Ok(allowed(&gate, outcome.key.as_deref())),
        code => Err(refusal(code, Some(&outcome))),
    };
    let status = answer.as_ref().map_or_else(|e| e.status, HttpResponse::status).as_u16();
    meter(state, &gate, &outcome, (&path, method_label), status, ip, started);
    let mut response = answer.unwrap_or_else(HttpResponse::from_error);
    decorate(&mut response, outcome.code);
    Ok(response)
}

/// The original method and URI from the proxy's headers: `X-Forwarded-Method` /
/// `X-Forwarded-Uri` (Traefik, Caddy) or `X-Original-Method` / `X-Original-URI` (nginx), and
/// without them this request's own method and `/`. A proxy sets one convention and passes
/// the client's headers on, so a client could send the other: when both arrive and differ,
/// `Err`.
fn original_request(req: &HttpRequest) -> Result<(&str, &str), ()> {
    let headers = req.headers();
    let one = |names: [&str; 2]| -> Result<Option<&str>, ()> {
        let values = names.map(|n| headers.get(n).map(|v| v.to_str().map_err(|_| ())));
        match values {
            [Some(a), Some(b)] => {
                let (a, b) = (a?, b?);
                if a == b { Ok(Some(a)) } else { Err(()) }
            }
            [Some(one), None] | [None, Some(one)] => one.map(Some),
            [None, None] => Ok(None),
        }
    };
    let method = one(["x-forwarded-method", "x-original-method"])?.unwrap_or_else(|| req.method().as_str());
    let uri = one(["x-forwarded-uri", "x-original-uri"])?.unwrap_or("/");
    Ok((method, uri))
}

/// The refusal of a request no rule can be matched against, before any key is looked at
/// (nothing is metered under one): `403 route_not_allowed` saying why.
fn unmatchable<S: Store, L: Admission>(state: &AppState<S, L>, why: &str) -> HttpResponse {
    state.instruments.verification(VerifyCode::RouteNotAllowed);
    let refused = ApiError { message: why.into(), ..refusal(VerifyCode::RouteNotAllowed, None) };
    let mut response = HttpResponse::from_error(refused);
    decorate(&mut response, VerifyCode::RouteNotAllowed);
    response
}

/// What every verdict carries: its code, no caching, and on a 401 the scheme to use.
fn decorate(response: &mut HttpResponse, code: VerifyCode) {
    let headers = response.headers_mut();
    headers.insert(CODE, HeaderValue::from_static(code.as_str()));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if response.status() == actix_web::http::StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"keyward\""));
    }
}

/// The method as a usage label: a token of letters, or none.
fn valid_method(method: &str) -> Option<&str> {
    (!method.is_empty() && method.len() <= 32 && method.bytes().all(|b| b.is_ascii_alphabetic())).then_some(method)
}

/// The key in the original URI's query parameter `name`, if the keyspace allows one.
fn query_key(uri: &str, name: &str) -> Option<String> {
    let query = uri.split_once('?')?.1.split('#').next()?;
    form_urlencoded::parse(query.as_bytes()).find(|(n, _)| n == name).map(|(_, v)| v.into_owned())
}

/// `200` with the key's identity for the upstream: every header, empty when the key has no
/// such value, so that a proxy that copies them (Caddy 2.6 writes its placeholder's text
/// for a header the answer lacks) overwrites whatever the client sent.
fn allowed(gate: &Gate, key: Option<&VerifiableKey>) -> HttpResponse {
    let mut response = HttpResponse::Ok().finish();
    let headers = response.headers_mut();
    let Some(key) = key else { return response };
    let mut set = |name: HeaderName, value: Option<HeaderValue>| {
        headers.insert(name, value.unwrap_or_else(|| HeaderValue::from_static("")));
    };
    set(KEY_ID, crate::headers::header_value(format_args!("{}", key.id)));
    set(KEYSPACE_ID, crate::headers::header_value(format_args!("{}", gate.keyspace_id)));
    // An owner id that is no header value (a control character, say) is sent empty.
    set(OWNER_ID, key.owner_id().and_then(|owner| HeaderValue::from_str(owner).ok()));
    // One buffer, not a vector of the scopes and then their join.
    let mut scopes = String::with_capacity(key.scopes.iter().map(|s| s.as_str().len() + 1).sum());
    for scope in key.scopes.iter() {
        if !scopes.is_empty() {
            scopes.push(' ');
        }
        scopes.push_str(scope.as_str());
    }
    set(SCOPES, HeaderValue::from_str(&scopes).ok());
    set(
        META,
        key.metadata_json().and_then(|json| {
            HeaderValue::from_str(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.get())).ok()
        }),
    );
    response
}

/// The refusal of a verdict other than `VALID`: 401 for no usable key, 403 for a key that
/// may not pass here, 429 for its limits.
fn refusal(code: VerifyCode, outcome: Option<&VerifyOutcome>) -> ApiError {
    let forbidden = ApiError::new;
    match code {
        VerifyCode::Valid | VerifyCode::NotFound | VerifyCode::Revoked | VerifyCode::Expired => {
            ApiError::new(ErrorCode::Unauthorized, "a valid API key of this keyspace is required")
        }
        VerifyCode::Inactive => forbidden(ErrorCode::KeyInactive, "the key is disabled"),
        VerifyCode::IpNotAllowed => forbidden(ErrorCode::IpNotAllowed, "the key may not be used from this address"),
        VerifyCode::WrongResource => forbidden(ErrorCode::Forbidden, "the key is bound to another resource"),
        VerifyCode::InsufficientScope => {
            forbidden(ErrorCode::InsufficientScope, "the key lacks a scope this route requires")
        }
        VerifyCode::RouteNotAllowed => {
            forbidden(ErrorCode::RouteNotAllowed, "no key may pass to this route (the keyspace's route rules)")
        }
        VerifyCode::RateLimited => ApiError {
            retry: Some(("key", outcome.and_then(|o| o.ratelimit).map_or(1, |d| d.retry_after_seconds.max(1)))),
            ..ApiError::new(ErrorCode::RateLimited, "the key's rate limit is reached")
        },
        VerifyCode::QuotaExhausted => ApiError::new(ErrorCode::QuotaExhausted, "the key's quota is used up"),
    }
}

/// Meters the check as a verification, under the key (or the gate's account when there is
/// none), with the original method and path: in memory, written by the flusher.
fn meter<S: Store, L: Admission>(
    state: &AppState<S, L>,
    gate: &Gate,
    outcome: &VerifyOutcome,
    (path, method): (&str, Option<&str>),
    status: u16,
    ip: Option<std::net::IpAddr>,
    started: std::time::Instant,
) {
    let key = outcome.key.as_deref();
    let labels_fit = keyward_domain::usage::check_request_labels(Some(path), method).is_ok();
    state.meter.record(keyward_domain::usage::UsageRecord {
        key_id: key.map(|k| k.id),
        account_id: key.map_or(gate.account_id, |k| k.account_id),
        ts: state.service.now(),
        endpoint: labels_fit.then(|| path.to_owned()),
        method: method.filter(|_| labels_fit).map(str::to_owned),
        status_code: Some(status),
        response_time_us: Some(keyward_domain::usage::micros(started.elapsed())),
        ip,
        outcome: Some(outcome.code),
        quota_spent: outcome.quota_spent,
    });
}

#[utoipa::path(get, path = "/v1/keyspaces/{id}/routes", tag = "gateways", params(("id" = String, Path)),
    responses((status = 200, body = RouteTableResponse), (status = 404, body = ErrorEnvelope)))]
pub async fn get_routes<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<web::Json<RouteTableResponse>> {
    let principal = principal(&state, &req).await?;
    let keyspace = id.parse().map_err(|_| ApiError::not_found())?;
    let gate = state.service.routes(&principal, keyspace).await?;
    Ok(web::Json((&*gate).into()))
}

#[utoipa::path(put, path = "/v1/keyspaces/{id}/routes", tag = "gateways", params(("id" = String, Path)),
    request_body(content = RouteTableRequest, example = json!({"default": "deny", "rules": [
        {"methods": ["GET", "HEAD"], "path": "/v1/servers/**", "scopes": ["servers:read"]},
        {"methods": ["POST", "PUT", "DELETE"], "path": "/v1/servers/**", "scopes": ["servers:write"]},
        {"path": "/v1/status", "scopes": []}]})),
    responses((status = 200, body = RouteTableResponse), (status = 400, body = ErrorEnvelope, description = "A bad rule, each named (`rules[2].path`)"),
        (status = 404, body = ErrorEnvelope)))]
pub async fn put_routes<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    id: web::Path<String>,
    body: Json<RouteTableRequest>,
) -> Result<web::Json<RouteTableResponse>> {
    let principal = principal(&state, &req).await?;
    let keyspace = id.parse().map_err(|_| ApiError::not_found())?;
    let input = body.into_inner()?.into();
    let gate = state.service.put_routes(&principal, keyspace, &input).await?;
    Ok(web::Json((&gate).into()))
}
