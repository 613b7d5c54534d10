//! Endpoints for what only the person can do: change a password someone else chose
//! (`POST /v1/account/password`), and answer invitations to other accounts
//! (`/v1/auth/invitations`).

use actix_web::{HttpRequest, HttpResponse, web};
use keyward_domain::ratelimit::Admission;
use keyward_domain::{AccountId, Store, password::Password, people::Role};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{
    AppState,
    dto::{ErrorEnvelope, SecretString},
    error::ApiError,
    extract::Json,
    extract::request_context,
    session::principal,
};

type Result<T, E = ApiError> = std::result::Result<T, E>;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    #[schema(value_type = String, format = Password)]
    pub current_password: SecretString,
    /// 10 to 1,024 characters.
    #[schema(value_type = String, format = Password, min_length = 10, max_length = 1024)]
    pub new_password: SecretString,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChangePasswordResponse {
    /// The new session's expiry; its cookie replaces the old one.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub session_expires_at: OffsetDateTime,
}

#[utoipa::path(post, path = "/v1/account/password", tag = "auth", request_body(content = ChangePasswordRequest, example = json!({"current_password": "the one you were given", "new_password": "correct horse battery staple"})),
    responses((status = 200, body = ChangePasswordResponse, description = "Sets a new session cookie; the old session is over"),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 429, body = ErrorEnvelope)))]
pub async fn change_password<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    body: Json<ChangePasswordRequest>,
) -> Result<HttpResponse> {
    let principal = principal(&state, &req).await?;
    let ChangePasswordRequest { current_password, new_password } = body.into_inner()?;
    let new_password = Password::new(new_password.0).map_err(|e| ApiError::field("new_password", e.to_string()))?;
    let (token, session) = state
        .people
        .change_password(&principal, Password::presented(current_password.0), new_password, &request_context(&req))
        .await?;
    Ok(HttpResponse::Ok()
        .cookie(state.cookies.session_cookie(&token))
        .json(ChangePasswordResponse { session_expires_at: session.expires_at() }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationDto {
    #[schema(value_type = String)]
    pub account_id: AccountId,
    /// The inviting account's name.
    pub name: String,
    #[schema(value_type = crate::dto::schema::RoleName, example = "member")]
    pub role: Role,
    /// Who invited you: a user (`usr_…`) or a key (`key_…`).
    pub invited_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub invited_at: OffsetDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationListResponse {
    pub data: Vec<InvitationDto>,
}

#[utoipa::path(get, path = "/v1/auth/invitations", tag = "auth",
    responses((status = 200, body = InvitationListResponse), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
pub async fn list_invitations<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
) -> Result<web::Json<InvitationListResponse>> {
    let principal = principal(&state, &req).await?;
    let waiting = state.people.invitations(&principal).await?;
    let data = waiting
        .into_iter()
        .map(|(i, name)| InvitationDto {
            account_id: i.account_id,
            name,
            role: i.role,
            invited_by: i.invited_by.to_string(),
            invited_at: i.created_at,
        })
        .collect();
    Ok(web::Json(InvitationListResponse { data }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JoinedResponse {
    #[schema(value_type = String)]
    pub account_id: AccountId,
    #[schema(value_type = crate::dto::schema::RoleName, example = "member")]
    pub role: Role,
}

#[utoipa::path(post, path = "/v1/auth/invitations/{account_id}/accept", tag = "auth", params(("account_id" = String, Path)),
    responses((status = 200, body = JoinedResponse, description = "You are a member; log in to that account to use it"),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn accept_invitation<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    account: web::Path<String>,
) -> Result<web::Json<JoinedResponse>> {
    let principal = principal(&state, &req).await?;
    let account: AccountId = account.parse().map_err(|_| ApiError::not_found())?;
    let joined = state.people.answer_invitation(&principal, account, true, &request_context(&req)).await?;
    let membership = joined.ok_or_else(ApiError::internal)?;
    Ok(web::Json(JoinedResponse { account_id: membership.account_id, role: membership.role }))
}

#[utoipa::path(delete, path = "/v1/auth/invitations/{account_id}", tag = "auth", params(("account_id" = String, Path)),
    responses((status = 204, description = "Declined"), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn decline_invitation<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    account: web::Path<String>,
) -> Result<HttpResponse> {
    let principal = principal(&state, &req).await?;
    let account: AccountId = account.parse().map_err(|_| ApiError::not_found())?;
    state.people.answer_invitation(&principal, account, false, &request_context(&req)).await?;
    Ok(HttpResponse::NoContent().finish())
}
