//! What only the person can do: change their password (`POST /v1/account/password`),
//! which ends every other session and temporary key of the login. (Answering invitations
//! is in [`crate::invitations`].)

use actix_web::{HttpRequest, HttpResponse, web};
use keyward_domain::ratelimit::Admission;
use keyward_domain::{Store, password::Password};
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
