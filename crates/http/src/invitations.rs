//! The account's side of invitations: those it sent that wait for an answer, and
//! withdrawing one. (The invited person's side — listing, accepting, declining — is in
//! [`crate::consent`].)

use actix_web::{HttpRequest, HttpResponse, web};
use keyward_domain::{
    Store, UserId,
    people::{Invitation, Role},
    ratelimit::Admission,
};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{AppState, dto::ErrorEnvelope, error::ApiError, extract::request_context, session::principal};

type Result<T, E = ApiError> = std::result::Result<T, E>;

#[derive(Debug, Serialize, ToSchema)]
pub struct SentInvitationDto {
    /// The invited person's user id: `DELETE /v1/account/invitations/{user_id}` withdraws it.
    #[schema(value_type = String)]
    pub user_id: UserId,
    pub email: String,
    #[schema(value_type = crate::dto::schema::RoleName, example = "member")]
    pub role: Role,
    /// Who invited them: a user (`usr_…`) or a key (`key_…`).
    pub invited_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub invited_at: OffsetDateTime,
}

impl SentInvitationDto {
    fn new(invitation: &Invitation, email: &keyward_domain::people::Email) -> Self {
        Self {
            user_id: invitation.user_id,
            email: email.to_string(),
            role: invitation.role,
            invited_by: invitation.invited_by.to_string(),
            invited_at: invitation.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SentInvitationListResponse {
    pub data: Vec<SentInvitationDto>,
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
    Ok(web::Json(SentInvitationListResponse { data: sent.iter().map(|(i, e)| SentInvitationDto::new(i, e)).collect() }))
}

#[utoipa::path(delete, path = "/v1/account/invitations/{user_id}", tag = "users", params(("user_id" = String, Path)),
    responses((status = 204, description = "Withdrawn: the person can no longer accept it"), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope)))]
pub async fn withdraw_invitation<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    user_id: web::Path<String>,
) -> Result<HttpResponse> {
    let principal = principal(&state, &req).await?;
    // An id that does not parse names nothing: 404, like one of another account.
    let user = user_id.parse().map_err(|_| ApiError::not_found())?;
    state.people.withdraw_invitation(&principal, user, &request_context(&req)).await?;
    Ok(HttpResponse::NoContent().finish())
}
