//! Invitations (issue #29): the account's side — inviting an address
//! (`POST /v1/account/users`), listing and withdrawing what it sent — and the side of
//! whoever holds the link (`/v1/invitations/{token}`: see it, accept it, decline it), and a
//! login's look at what waits for its address (`GET /v1/auth/invitations`).
//!
//! The token travels in the path because the link is what a mail can carry; the access log
//! writes it as `[token]` (`telemetry::LoggedPath`), and, like every management answer,
//! these are `Cache-Control: no-store` (the journal's).

pub mod dto;

use actix_web::{HttpRequest, HttpResponse, web};
use keyward_domain::{
    InvitationId, Store,
    password::Password,
    people_service::{LinkToken, SentInvitation},
    ratelimit::Admission,
};

pub use dto::*;

use crate::{
    AppState, PublicUrl,
    dto::{ErrorEnvelope, SecretString},
    error::ApiError,
    extract::{Json, OptionalJson, request_context},
    people::UserDto,
    session::principal,
};

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// The path a link opens: the dashboard's page for it (`{public_url}/invitations/{token}`).
pub const LINK_PATH: &str = "/invitations/";

/// A link's token as the path gave it: 43 base62 characters, or no invitation at all (404,
/// without a lookup).
pub(crate) fn link_token(raw: &str) -> Result<LinkToken> {
    LinkToken::parse(raw).ok_or_else(ApiError::not_found)
}

#[utoipa::path(post, path = "/v1/account/users", tag = "users", request_body(content = InviteRequest, example = json!({"email": "grace@example.com", "role": "admin"})),
    responses((status = 202, body = InvitedResponse, description = "Invited, whether or not the address has a login: the same answer either way"),
        (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope, description = "`already_member`")))]
pub async fn invite_user<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    body: Json<InviteRequest>,
) -> Result<HttpResponse> {
    let principal = principal(&state, &req).await?;
    let body = body.into_inner()?;
    let SentInvitation { invitation, token, mailed } =
        state.people.invite(&principal, &body.email, body.role, &request_context(&req)).await?;
    // With a mailer (`KEYWARD_SMTP_URL`) the link goes only to the address; without one the
    // inviting admin hands it over.
    let accept_url = (!mailed).then(|| {
        let public_url = req.app_data::<web::Data<PublicUrl>>().map(|u| u.0.clone()).unwrap_or_default();
        SecretString(format!("{public_url}{LINK_PATH}{}", token.expose_secret()))
    });
    Ok(HttpResponse::Accepted().json(InvitedResponse {
        status: "invited",
        invitation: (&invitation).into(),
        accept_url,
    }))
}

#[utoipa::path(get, path = "/v1/account/invitations", tag = "users",
    responses((status = 200, body = SentInvitationListResponse, description = "The account's invitations that wait for an answer, oldest first"),
        (status = 403, body = ErrorEnvelope)))]
pub async fn list_sent_invitations<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
) -> Result<web::Json<SentInvitationListResponse>> {
    let principal = principal(&state, &req).await?;
    let sent = state.people.list_sent_invitations(&principal).await?;
    Ok(web::Json(SentInvitationListResponse { data: sent.iter().map(SentInvitationDto::from).collect() }))
}

#[utoipa::path(delete, path = "/v1/account/invitations/{id}", tag = "users", params(("id" = String, Path)),
    responses((status = 204, description = "Withdrawn: its link no longer works"), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope)))]
pub async fn withdraw_invitation<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let principal = principal(&state, &req).await?;
    // An id that does not parse names nothing: 404, like one of another account.
    let id: InvitationId = id.parse().map_err(|_| ApiError::not_found())?;
    state.people.withdraw_invitation(&principal, id, &request_context(&req)).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/v1/auth/invitations", tag = "auth",
    responses((status = 200, body = InvitationListResponse, description = "What waits for the signed-in login's address"),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
pub async fn list_invitations<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
) -> Result<web::Json<InvitationListResponse>> {
    let token = crate::people::session_token(&state, &req)?;
    let waiting = state.people.invitations_for_login(&token).await?;
    let data = waiting
        .into_iter()
        .map(|(i, name)| InvitationDto {
            id: i.id,
            account_id: i.account_id,
            name,
            role: i.role,
            invited_at: i.created_at,
            expires_at: i.expires_at,
        })
        .collect();
    Ok(web::Json(InvitationListResponse { data }))
}

#[utoipa::path(get, path = "/v1/invitations/{token}", tag = "invitations", params(("token" = String, Path, description = "The token of the link")),
    responses((status = 200, body = InvitationViewResponse), (status = 404, body = ErrorEnvelope, description = "Unknown, used, withdrawn or expired")))]
pub async fn get_invitation<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    token: web::Path<String>,
) -> Result<HttpResponse> {
    let view = state.people.describe_invitation(&link_token(&token)?, &request_context(&req)).await?;
    Ok(HttpResponse::Ok().json(InvitationViewResponse::from(view)))
}

#[utoipa::path(post, path = "/v1/invitations/{token}/accept", tag = "invitations", params(("token" = String, Path, description = "The token of the link")),
    request_body(content = Option<AcceptInvitationRequest>, example = json!({"password": "correct horse battery staple"})),
    responses((status = 200, body = AcceptedResponse, description = "A member now; sets the session cookie of the account joined"),
        (status = 400, body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope, description = "The address has a login, and no session of it came with the request"),
        (status = 403, body = ErrorEnvelope, description = "The session is another login's"),
        (status = 404, body = ErrorEnvelope, description = "Unknown, used, withdrawn or expired"),
        (status = 409, body = ErrorEnvelope, description = "`already_member`")))]
pub async fn accept_invitation<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    token: web::Path<String>,
    body: OptionalJson<AcceptInvitationRequest>,
) -> Result<HttpResponse> {
    let token = link_token(&token)?;
    let body = body.into_inner()?;
    let password = match body.password {
        Some(p) => Some(Password::new(p.0).map_err(|e| ApiError::field("password", e.to_string()))?),
        None => None,
    };
    let signed_in = state.cookies.token_of(&req);
    let accepted = state.people.accept_invitation(&token, password, signed_in.as_ref(), &request_context(&req)).await?;
    Ok(HttpResponse::Ok().cookie(state.cookies.session_cookie(&accepted.token)).json(AcceptedResponse {
        user: UserDto { id: accepted.user.id, email: accepted.user.email.to_string() },
        account_id: accepted.account.id,
        account_name: accepted.account.name,
        role: accepted.membership.role,
        created_login: accepted.created_login,
        session_expires_at: accepted.session.expires_at(),
    }))
}

#[utoipa::path(delete, path = "/v1/invitations/{token}", tag = "invitations", params(("token" = String, Path, description = "The token of the link")),
    responses((status = 204, description = "Declined: the link no longer works"), (status = 404, body = ErrorEnvelope)))]
pub async fn decline_invitation<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    token: web::Path<String>,
) -> Result<HttpResponse> {
    state.people.decline_invitation(&link_token(&token)?, &request_context(&req)).await?;
    Ok(HttpResponse::NoContent().finish())
}
