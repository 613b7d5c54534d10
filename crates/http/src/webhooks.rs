//! `/v1/webhooks`: an account's endpoints, their secrets (shown once) and rotation, the
//! attempts at delivering to them, and a manual retry (docs/webhooks.md).

use actix_web::{HttpRequest, HttpResponse, web};
use keyward_domain::{AttemptId, MessageId, Store, WebhookId, ratelimit::Admission, webhook::WebhookEndpoint};

use crate::{
    AppState, cursor,
    dto::*,
    error::ApiError,
    extract::{Json, OptionalJson, Query},
    handlers::{DeletedResponse, page_limit},
    session::principal,
};

type Result<T> = std::result::Result<T, ApiError>;

fn parse_id<T: std::str::FromStr>(raw: &str) -> Result<T> {
    raw.parse().map_err(|_| ApiError::not_found())
}

fn with_secret(endpoint: &WebhookEndpoint, now: time::OffsetDateTime) -> WebhookWithSecretResponse {
    WebhookWithSecretResponse {
        endpoint: WebhookResponse::new(endpoint, now),
        secret: SecretString(endpoint.secret.expose()),
    }
}

#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks",
    request_body(content = CreateWebhookRequest, example = json!({"url": "https://api.example.com/keyward-events", "event_types": ["key.revoked", "key.leaked"]})),
    responses((status = 201, body = WebhookWithSecretResponse), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
pub async fn create_webhook<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    body: Json<CreateWebhookRequest>,
) -> Result<HttpResponse> {
    let principal = principal(&state, &req).await?;
    let endpoint = state.service.create_webhook(&principal, body.into_inner()?.into()).await?;
    crate::audit::note_created(&req, endpoint.id);
    Ok(HttpResponse::Created().json(with_secret(&endpoint, state.service.now())))
}

#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks",
    responses((status = 200, body = WebhookListResponse), (status = 403, body = ErrorEnvelope)))]
pub async fn list_webhooks<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
) -> Result<web::Json<WebhookListResponse>> {
    let principal = principal(&state, &req).await?;
    let now = state.service.now();
    let endpoints = state.service.list_webhooks(&principal).await?;
    Ok(web::Json(WebhookListResponse { data: endpoints.iter().map(|e| WebhookResponse::new(e, now)).collect() }))
}

#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, body = WebhookResponse), (status = 404, body = ErrorEnvelope)))]
pub async fn get_webhook<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<web::Json<WebhookResponse>> {
    let principal = principal(&state, &req).await?;
    let endpoint = state.service.get_webhook(&principal, parse_id::<WebhookId>(&id)?).await?;
    Ok(web::Json(WebhookResponse::new(&endpoint, state.service.now())))
}

#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    request_body(content = UpdateWebhookRequest, example = json!({"event_types": [], "enabled": true})),
    responses((status = 200, body = WebhookResponse), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn update_webhook<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    id: web::Path<String>,
    body: Json<UpdateWebhookRequest>,
) -> Result<web::Json<WebhookResponse>> {
    let principal = principal(&state, &req).await?;
    let endpoint = state.service.update_webhook(&principal, parse_id(&id)?, body.into_inner()?.into()).await?;
    Ok(web::Json(WebhookResponse::new(&endpoint, state.service.now())))
}

#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, body = DeletedResponse), (status = 404, body = ErrorEnvelope)))]
pub async fn delete_webhook<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<web::Json<DeletedResponse>> {
    let principal = principal(&state, &req).await?;
    let id: WebhookId = parse_id(&id)?;
    state.service.delete_webhook(&principal, id).await?;
    Ok(web::Json(DeletedResponse { id: id.to_string(), deleted: true }))
}

#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-secret", tag = "webhooks", params(("id" = String, Path)),
    request_body(content = Option<RotateWebhookSecretRequest>, example = json!({"overlap_seconds": 3600})),
    responses((status = 200, body = WebhookWithSecretResponse), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn rotate_webhook_secret<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    id: web::Path<String>,
    body: OptionalJson<RotateWebhookSecretRequest>,
) -> Result<web::Json<WebhookWithSecretResponse>> {
    let principal = principal(&state, &req).await?;
    let overlap = body.into_inner()?.overlap_seconds;
    let endpoint = state.service.rotate_webhook_secret(&principal, parse_id(&id)?, overlap).await?;
    Ok(web::Json(with_secret(&endpoint, state.service.now())))
}

#[utoipa::path(get, path = "/v1/webhooks/{id}/attempts", tag = "webhooks",
    params(("id" = String, Path), WebhookAttemptQuery),
    responses((status = 200, body = WebhookAttemptListResponse), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn list_webhook_attempts<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    id: web::Path<String>,
    query: Query<WebhookAttemptQuery>,
) -> Result<web::Json<WebhookAttemptListResponse>> {
    let principal = principal(&state, &req).await?;
    let query = query.into_inner()?;
    let limit = page_limit(query.limit)?;
    let before = query.cursor.as_deref().map(cursor::decode::<AttemptId>).transpose()?;
    let page = state.service.list_webhook_attempts(&principal, parse_id(&id)?, before, limit).await?;
    let next_cursor = page.has_more.then(|| page.attempts.last().map(|a| cursor::encode(a.id))).flatten();
    Ok(web::Json(WebhookAttemptListResponse {
        data: page.attempts.iter().map(WebhookAttemptResponse::from).collect(),
        next_cursor,
    }))
}

#[utoipa::path(post, path = "/v1/webhooks/{id}/messages/{message_id}/retry", tag = "webhooks",
    params(("id" = String, Path), ("message_id" = String, Path)),
    responses((status = 202, body = WebhookRetryResponse), (status = 404, body = ErrorEnvelope)))]
pub async fn retry_webhook_message<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let principal = principal(&state, &req).await?;
    let (id, message) = path.into_inner();
    let message: MessageId = parse_id(&message)?;
    state.service.retry_webhook_message(&principal, parse_id(&id)?, message).await?;
    Ok(HttpResponse::Accepted().json(WebhookRetryResponse { message_id: message.to_string(), queued: true }))
}
