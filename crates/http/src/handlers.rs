//! The endpoints. Each handler authenticates, calls one use case of `KeyService`, and turns
//! the result into a DTO; the rules live in the domain.

use actix_web::{HttpMessage as _, HttpRequest, HttpResponse, web};
use keyward_domain::ratelimit::Admission;
use keyward_domain::{
    KeyId, KeyKind, KeyspaceId, PlaintextKey, Store,
    key_service::VerifyInput,
    ports::{KeyFilter, PageRequest},
};
use serde::Serialize;
use tracing::Instrument as _;

use crate::{
    AppState,
    cursor::{self, AuditCursor, UsageCursor},
    dto::*,
    error::{ApiError, ErrorCode},
    extract::{Json, OptionalJson, Query, client_ip, credential},
    session::principal,
};

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// A path id that does not parse names nothing: 404, like an id of another account.
fn parse_id<T: std::str::FromStr>(raw: &str) -> Result<T> {
    raw.parse().map_err(|_| ApiError::not_found())
}

fn created<T: Serialize>(body: T) -> HttpResponse {
    HttpResponse::Created().json(body)
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = HealthResponse)))]
pub async fn healthz() -> web::Json<HealthResponse> {
    web::Json(HealthResponse { status: "ok" })
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = HealthResponse), (status = 503, body = ErrorEnvelope)))]
pub async fn readyz<S: Store, L: Admission>(state: web::Data<AppState<S, L>>) -> Result<web::Json<HealthResponse>> {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(ApiError::new(ErrorCode::ShuttingDown, "this instance is shutting down"));
    }
    state.service.store().ping().await.map_err(|e| ApiError::from(keyward_domain::error::ManageError::Storage(e)))?;
    Ok(web::Json(HealthResponse { status: "ok" }))
}

#[utoipa::path(get, path = "/v1/account", tag = "account",
    responses((status = 200, body = AccountResponse), (status = 401, body = ErrorEnvelope)))]
pub async fn get_account<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
) -> Result<web::Json<AccountResponse>> {
    let principal = principal(&state, &req).await?;
    Ok(web::Json(state.service.account_overview(&principal).await?.into()))
}

// --- keyspaces ------------------------------------------------------------------------------

#[utoipa::path(post, path = "/v1/keyspaces", tag = "keyspaces", request_body(content = CreateKeyspaceRequest, example = json!({"name": "Production API", "prefix": "acme", "default_scopes": ["servers:read"], "ip_policy": "open"})),
    responses((status = 201, body = KeyspaceResponse), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
pub async fn create_keyspace<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    body: Json<CreateKeyspaceRequest>,
) -> Result<HttpResponse> {
    let principal = principal(&state, &req).await?;
    let keyspace = state.service.create_keyspace(&principal, body.into_inner()?.into()).await?;
    crate::audit::note_created(&req, keyspace.id);
    Ok(created(KeyspaceResponse::from(&keyspace)))
}

#[utoipa::path(get, path = "/v1/keyspaces", tag = "keyspaces",
    responses((status = 200, body = KeyspaceListResponse)))]
pub async fn list_keyspaces<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
) -> Result<web::Json<KeyspaceListResponse>> {
    let principal = principal(&state, &req).await?;
    let keyspaces = state.service.list_keyspaces(&principal).await?;
    Ok(web::Json(KeyspaceListResponse { data: keyspaces.iter().map(Into::into).collect() }))
}

#[utoipa::path(get, path = "/v1/keyspaces/{id}", tag = "keyspaces",
    params(("id" = String, Path)), responses((status = 200, body = KeyspaceResponse), (status = 404, body = ErrorEnvelope)))]
pub async fn get_keyspace<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<web::Json<KeyspaceResponse>> {
    let principal = principal(&state, &req).await?;
    let keyspace = state.service.get_keyspace(&principal, parse_id::<KeyspaceId>(&id)?).await?;
    Ok(web::Json((&keyspace).into()))
}

#[utoipa::path(patch, path = "/v1/keyspaces/{id}", tag = "keyspaces", request_body(content = UpdateKeyspaceRequest, example = json!({"name": "Production API (EU)", "default_scopes": ["servers:read", "servers:write"]})),
    params(("id" = String, Path)), responses((status = 200, body = KeyspaceResponse), (status = 404, body = ErrorEnvelope)))]
pub async fn update_keyspace<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    id: web::Path<String>,
    body: Json<UpdateKeyspaceRequest>,
) -> Result<web::Json<KeyspaceResponse>> {
    let principal = principal(&state, &req).await?;
    let keyspace = state.service.update_keyspace(&principal, parse_id(&id)?, body.into_inner()?.into()).await?;
    Ok(web::Json((&keyspace).into()))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeletedResponse {
    pub id: String,
    pub deleted: bool,
}

#[utoipa::path(delete, path = "/v1/keyspaces/{id}", tag = "keyspaces",
    params(("id" = String, Path)),
    responses((status = 200, body = DeletedResponse), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn delete_keyspace<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<web::Json<DeletedResponse>> {
    let principal = principal(&state, &req).await?;
    let id: KeyspaceId = parse_id(&id)?;
    state.service.delete_keyspace(&principal, id).await?;
    Ok(web::Json(DeletedResponse { id: id.to_string(), deleted: true }))
}

// --- service keys ---------------------------------------------------------------------------

fn issued(issued: &keyward_domain::key_service::IssuedKey, now: time::OffsetDateTime) -> HttpResponse {
    created(IssuedKeyResponse::new(issued, now))
}

#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body(content = CreateKeyRequest, example = json!({"name": "Customer 42 production", "owner_id": "cust_42", "scopes": ["servers:read"], "environment": "live", "rate_limits": [{"name": "minute", "limit": 600, "period_seconds": 60}], "metadata": {"plan": "gold"}})),
    responses((status = 201, body = IssuedKeyResponse), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
pub async fn create_key<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    body: Json<CreateKeyRequest>,
) -> Result<HttpResponse> {
    let principal = principal(&state, &req).await?;
    let key = state.service.create_key(&principal, body.into_inner()?.into()).await?;
    crate::audit::note_created(&req, key.key.id);
    Ok(issued(&key, state.service.now()))
}

#[utoipa::path(post, path = "/v1/keys/import", tag = "keys", request_body(content = ImportKeysRequest, example = json!({"keys": [{"hash": "sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8", "name": "migrated from the old system", "scopes": ["servers:read"]}]})),
    responses((status = 201, body = ImportKeysResponse), (status = 400, body = ErrorEnvelope), (status = 413, body = ErrorEnvelope)))]
pub async fn import_keys<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    body: Json<ImportKeysRequest>,
) -> Result<HttpResponse> {
    let principal = principal(&state, &req).await?;
    let ImportKeysRequest { keyspace_id, keys } = body.into_inner()?;
    // Every imported key spends the account's import budget, all of them or none.
    let subject = format!("imported_keys:{}", principal.account_id);
    let rules = state.api_limits.imported_keys_rules();
    let (cost, now) = (keys.len() as u64, state.service.now());
    crate::limits::enforce_cost(&*state.limits, &req, "endpoint", subject.as_bytes(), &rules, cost, now).await?;
    let entries = keys.into_iter().map(ImportKeyEntry::into_domain).collect();
    let imported = state.service.import_keys(&principal, keyspace_id, entries).await?;
    Ok(created(ImportKeysResponse {
        imported: imported.len(),
        keys: imported.into_iter().map(|k| ImportedKeyRef { id: k.id, name: k.name }).collect(),
    }))
}

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 100;

/// An opaque cursor: the base64url of a value's text form.
/// A page size: 1 to 100, 50 when absent.
pub(crate) fn page_limit(limit: Option<u32>) -> Result<u32> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::field("limit", format!("must be 1 to {MAX_PAGE}")))
    }
}

#[utoipa::path(get, path = "/v1/keys", tag = "keys", params(ListKeysQuery),
    responses((status = 200, body = KeyListResponse), (status = 400, body = ErrorEnvelope)))]
pub async fn list_keys<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    query: Query<ListKeysQuery>,
) -> Result<web::Json<KeyListResponse>> {
    let principal = principal(&state, &req).await?;
    let query = query.into_inner()?;
    let limit = page_limit(query.limit)?;
    let before = query.cursor.as_deref().map(cursor::decode::<KeyId>).transpose()?;
    let filter = KeyFilter {
        kind: KeyKind::Service,
        keyspace_id: query.keyspace_id,
        environment: query.environment,
        status: query.status,
        owner_id: query.owner_id,
    };
    let page = state.service.list_keys(&principal, &filter, PageRequest { limit, before }).await?;
    let now = state.service.now();
    let next_cursor = if page.has_more { page.keys.last().map(|k| cursor::encode(k.id)) } else { None };
    Ok(web::Json(KeyListResponse {
        data: page.keys.iter().map(|k| KeyResponse::new(k, now)).collect(),
        next_cursor,
        total: page.total,
    }))
}

#[utoipa::path(get, path = "/v1/keys/{id}", tag = "keys", params(("id" = String, Path)),
    responses((status = 200, body = KeyWithUsageResponse), (status = 404, body = ErrorEnvelope)))]
pub async fn get_key<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<web::Json<KeyWithUsageResponse>> {
    let principal = principal(&state, &req).await?;
    let key = state.service.get_key(&principal, parse_id(&id)?).await?;
    let usage = state.service.usage_summary(&principal, key.id).await?;
    Ok(web::Json(KeyWithUsageResponse {
        record: KeyResponse::new(&key, state.service.now()),
        usage: Some(KeyUsageSummary {
            requests_today: usage.requests_today,
            requests_this_month: usage.requests_this_month,
        }),
    }))
}

#[utoipa::path(patch, path = "/v1/keys/{id}", tag = "keys", params(("id" = String, Path)),
    request_body(content = UpdateKeyRequest, example = json!({"name": "Customer 42 production", "scopes": ["servers:read", "servers:write"], "is_active": true})),
    responses((status = 200, body = KeyResponse), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn update_key<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    id: web::Path<String>,
    body: Json<UpdateKeyRequest>,
) -> Result<web::Json<KeyResponse>> {
    let principal = principal(&state, &req).await?;
    let key = state.service.update_key(&principal, parse_id(&id)?, body.into_inner()?.into()).await?;
    Ok(web::Json(KeyResponse::new(&key, state.service.now())))
}

#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys", params(("id" = String, Path)),
    responses((status = 200, body = RevokeKeyResponse), (status = 404, body = ErrorEnvelope)))]
pub async fn revoke_key<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<web::Json<RevokeKeyResponse>> {
    let principal = principal(&state, &req).await?;
    let key = state.service.revoke_key(&principal, parse_id(&id)?).await?;
    let revoked_at = key.revoked_at.ok_or_else(ApiError::internal)?;
    Ok(web::Json(RevokeKeyResponse { id: key.id, revoked_at }))
}

#[utoipa::path(post, path = "/v1/keys/{id}/rotate", tag = "keys", params(("id" = String, Path)),
    request_body(content = Option<RotateKeyRequest>, example = json!({"grace_period_seconds": 86400})),
    responses((status = 201, body = IssuedKeyResponse), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn rotate_key<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    id: web::Path<String>,
    body: OptionalJson<RotateKeyRequest>,
) -> Result<HttpResponse> {
    let principal = principal(&state, &req).await?;
    let key = state.service.rotate_key(&principal, parse_id(&id)?, body.into_inner()?.grace_period_seconds).await?;
    Ok(issued(&key, state.service.now()))
}

#[utoipa::path(get, path = "/v1/keys/self", tag = "keys",
    responses((status = 200, body = KeyResponse), (status = 401, body = ErrorEnvelope)))]
pub async fn key_self<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
) -> Result<web::Json<KeyResponse>> {
    let started = std::time::Instant::now();
    let credential = credential(&req)?.ok_or_else(ApiError::unauthorized)?;
    let ip = client_ip(&req);
    let verified = state.service.authenticate_counted(&credential.key, ip, &*state.limits).await?;
    if credential.basic_account.is_some_and(|account| account != verified.account_id) {
        return Err(ApiError::unauthorized());
    }
    // The whole key object is more than the verification record holds: one read by id.
    // Gone in between (an import rolled back, a keyspace deleted) reads as unknown.
    let key = state
        .service
        .store()
        .get_key(verified.account_id, verified.id)
        .await
        .map_err(keyward_domain::error::AuthError::Storage)?
        .ok_or_else(ApiError::unauthorized)?;
    let now = state.service.now();
    // A key checking itself is a verification: metered (in memory), never audited.
    state.meter.record(keyward_domain::usage::UsageRecord {
        key_id: Some(key.id),
        account_id: key.account_id,
        ts: now,
        endpoint: Some("/v1/keys/self".to_owned()),
        method: Some("GET".to_owned()),
        status_code: None,
        response_time_us: Some(keyward_domain::usage::micros(started.elapsed())),
        ip,
        outcome: Some(keyward_domain::VerifyCode::Valid),
        quota_spent: None,
    });
    Ok(web::Json(KeyResponse::new(&key, now)))
}

#[utoipa::path(post, path = "/v1/keys/verify", tag = "verification", request_body(content = VerifyKeyRequest, example = json!({"key": "kw_live_3HnW8zcB1fQ2LkVd9sXyTq0aPm7Rb5EoJ4wZ1x", "scopes": ["servers:read"], "endpoint": "/servers", "method": "GET"})),
    responses((status = 200, body = VerifyKeyResponse<'static>), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
pub async fn verify_key<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    _: crate::session::CsrfChecked,
    body: Json<VerifyKeyRequest>,
) -> Result<HttpResponse> {
    // Keyward's own handling time (`avg_response_time_ms` of GET /v1/stats): from the
    // handler's start, the body already read, to the verdict.
    let started = std::time::Instant::now();
    let principal = crate::session::authorize(&state, &req, crate::session::Purpose::Verification).await?;
    let body = body.into_inner()?;
    // Checked before anything is decided or metered: a label no store can hold would
    // otherwise reach the usage flush.
    keyward_domain::usage::check_request_labels(body.endpoint.as_deref(), body.method.as_deref())
        .map_err(keyward_domain::error::ManageError::from)?;
    let input = VerifyInput {
        key: PlaintextKey::new(body.key.0),
        scopes: body.scopes,
        resource: body.resource,
        ip: body.ip,
        cost: body.cost.unwrap_or(1),
    };
    // Never the key, nor its hash: the outcome, and whether the store's cache answered
    // (recorded by the store, when it has one).
    let request_id = req.extensions().get::<keyward_domain::RequestId>().copied();
    let span = tracing::info_span!(
        target: keyward_telemetry::SPAN_TARGET,
        "verify",
        keyward.verify.code = tracing::field::Empty,
        keyward.cache = tracing::field::Empty,
        request_id = request_id.map(tracing::field::display),
    );
    let outcome = state.service.verify(&principal, &input, &*state.limits).instrument(span.clone()).await?;
    span.record("keyward.verify.code", outcome.code.as_str());
    state.instruments.verification(outcome.code);
    let key = outcome.key.as_deref();
    // Metered in memory, written by the flusher: no storage write here. A key the account
    // does not have counts in the calling account's statistics, under no key.
    state.meter.record(keyward_domain::usage::UsageRecord {
        key_id: key.map(|k| k.id),
        account_id: key.map_or(principal.account_id, |k| k.account_id),
        ts: state.service.now(),
        endpoint: body.endpoint,
        method: body.method,
        status_code: None,
        response_time_us: Some(keyward_domain::usage::micros(started.elapsed())),
        ip: input.ip,
        outcome: Some(outcome.code),
        quota_spent: outcome.quota_spent,
    });
    Ok(HttpResponse::Ok().json(VerifyKeyResponse {
        valid: outcome.code == keyward_domain::VerifyCode::Valid,
        code: outcome.code,
        key_id: key.map(|k| k.id),
        keyspace_id: key.and_then(|k| k.keyspace_id),
        name: key.map(|k| &*k.name),
        environment: key.map(|k| k.environment),
        scopes: key.map(|k| &k.scopes),
        resource: key.and_then(|k| k.resource().map(keyward_domain::key::ResourceBinding::as_str)),
        tier: key.map(|k| k.tier),
        owner_id: key.and_then(|k| k.owner_id()),
        metadata: key.map(|k| MetadataJson(k.metadata_json())),
        expires_at: key.and_then(|k| k.expires_at),
        ratelimit: outcome.ratelimit.map(|d| RateLimitState {
            limit: d.limit,
            remaining: d.remaining,
            reset_seconds: d.reset_seconds,
        }),
        quota_remaining: outcome.quota_remaining,
    }))
}

// --- usage ----------------------------------------------------------------------------------

#[utoipa::path(get, path = "/v1/keys/{id}/usage", tag = "usage", params(("id" = String, Path), UsageQuery),
    responses((status = 200, body = UsageListResponse), (status = 404, body = ErrorEnvelope)))]
pub async fn key_usage<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    id: web::Path<String>,
    query: Query<UsageQuery>,
) -> Result<web::Json<UsageListResponse>> {
    let principal = principal(&state, &req).await?;
    let query = query.into_inner()?;
    let limit = page_limit(query.limit)?;
    let before = query.cursor.as_deref().map(cursor::decode::<UsageCursor>).transpose()?.map(|c| c.0);
    let records =
        state.service.key_usage(&principal, parse_id(&id)?, (query.since, query.until), before, limit).await?;
    let next_cursor = (records.len() == limit as usize)
        .then(|| records.last().map(|e| cursor::encode(UsageCursor(e.position))))
        .flatten();
    let data = records.iter().map(|e| UsageRecordResponse::from(&e.record)).collect();
    Ok(web::Json(UsageListResponse { data, next_cursor }))
}

#[utoipa::path(get, path = "/v1/stats", tag = "usage",
    responses((status = 200, body = StatsResponse), (status = 403, body = ErrorEnvelope)))]
pub async fn stats<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
) -> Result<web::Json<StatsResponse>> {
    let principal = principal(&state, &req).await?;
    let (counts, stats) = state.service.stats(&principal).await?;
    Ok(web::Json(StatsResponse {
        active_keys: counts.active,
        revoked_keys: counts.revoked,
        verifications_total: stats.verifications_total,
        verifications_today: stats.verifications_today,
        success_rate: stats.success_rate,
        avg_response_time_ms: stats.avg_response_time_ms,
        by_code: stats.by_code,
        top_keys: stats
            .top_keys
            .iter()
            .map(|u| KeyUseResponse { key_id: u.key_id.to_string(), requests: u.requests })
            .collect(),
    }))
}

// --- audit ----------------------------------------------------------------------------------

#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditListResponse), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
pub async fn list_audit<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    query: Query<AuditQuery>,
) -> Result<web::Json<AuditListResponse>> {
    let principal = principal(&state, &req).await?;
    let query = query.into_inner()?;
    let limit = page_limit(query.limit)?;
    let before = query.cursor.as_deref().map(cursor::decode::<AuditCursor>).transpose()?.map(|c| c.0);
    let filter = keyward_domain::audit::AuditFilter {
        key_id: query.key_id,
        actor_id: query.actor_id,
        resource_type: query.resource_type,
        resource_id: query.resource_id,
        action: query.action,
        result: query.result,
        since: query.since,
        until: query.until,
    };
    let records = state.service.list_audit(&principal, &filter, limit, before).await?;
    let next_cursor = (records.len() == limit as usize)
        .then(|| records.last().map(|r| cursor::encode(AuditCursor(r.position()))))
        .flatten();
    Ok(web::Json(AuditListResponse { data: records.iter().map(AuditEventResponse::from).collect(), next_cursor }))
}

// --- operations -----------------------------------------------------------------------------

#[utoipa::path(get, path = "/docs/errors/{code}", tag = "operations", params(("code" = String, Path)),
    responses((status = 200, description = "The page of one error code, in Markdown", content_type = "text/markdown")))]
pub async fn error_page(code: web::Path<String>) -> Result<HttpResponse> {
    let page =
        crate::docs::error_page(&code).ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such error code"))?;
    Ok(HttpResponse::Ok().content_type("text/markdown; charset=utf-8").body(page))
}

/// 405 with `Allow: <allow>`; the envelope middleware renders the body and keeps the header.
pub fn method_not_allowed(allow: &str) -> HttpResponse {
    let error = ApiError::new(ErrorCode::MethodNotAllowed, format!("this route accepts {allow} only"));
    let mut response = HttpResponse::from_error(error);
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(allow) {
        response.headers_mut().insert(actix_web::http::header::ALLOW, value);
    }
    response
}
