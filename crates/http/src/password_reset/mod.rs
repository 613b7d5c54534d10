//! Password reset by mail (issue #29): `POST /v1/auth/password-reset` asks for a link (the
//! same 202 for any address), `POST /v1/auth/password-reset/{token}` uses it. The link
//! opens the dashboard's page, `{public_url}/password-reset/{token}`.

use actix_web::{HttpRequest, HttpResponse, web};
use keyward_domain::{Store, password::Password, ratelimit::Admission};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    AppState,
    dto::{ErrorEnvelope, SecretString},
    error::ApiError,
    extract::{Json, request_context},
};

type Result<T, E = ApiError> = std::result::Result<T, E>;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetRequest {
    #[schema(format = Email, max_length = 254, example = "ada@example.com")]
    pub email: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PasswordResetRequested {
    /// Always `requested`: if the address has a login and a mailer is configured, a link
    /// is on its way; nothing else is said.
    #[schema(example = "requested")]
    pub status: &'static str,
}

#[utoipa::path(post, path = "/v1/auth/password-reset", tag = "auth", request_body(content = PasswordResetRequest, example = json!({"email": "ada@example.com"})),
    responses((status = 202, body = PasswordResetRequested, description = "The same answer for every address"),
        (status = 400, body = ErrorEnvelope), (status = 429, body = ErrorEnvelope)))]
pub async fn request_reset<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    body: Json<PasswordResetRequest>,
) -> Result<HttpResponse> {
    let body = body.into_inner()?;
    state.people.request_password_reset(&body.email, &request_context(&req)).await?;
    Ok(HttpResponse::Accepted().json(PasswordResetRequested { status: "requested" }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPasswordRequest {
    /// 10 to 1,024 characters.
    #[schema(value_type = String, format = Password, min_length = 10, max_length = 1024)]
    pub password: SecretString,
}

#[utoipa::path(post, path = "/v1/auth/password-reset/{token}", tag = "auth", params(("token" = String, Path, description = "The token of the link")),
    request_body(content = ResetPasswordRequest, example = json!({"password": "correct horse battery staple"})),
    responses((status = 204, description = "The password is set; every session and temporary key of the login has ended"),
        (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope, description = "Unknown, used or expired")))]
pub async fn reset_password<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    token: web::Path<String>,
    body: Json<ResetPasswordRequest>,
) -> Result<HttpResponse> {
    let token = crate::invitations::link_token(&token)?;
    let password =
        Password::new(body.into_inner()?.password.0).map_err(|e| ApiError::field("password", e.to_string()))?;
    state.people.reset_password(&token, password, &request_context(&req)).await?;
    Ok(HttpResponse::NoContent().finish())
}
