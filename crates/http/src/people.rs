//! Endpoints for people: login, logout, the session, step-up, users, and account keys.

use actix_web::{HttpRequest, HttpResponse, web};
use keyward_domain::ratelimit::Admission;
use keyward_domain::{
    AccountId, KeyId, Store, UserId,
    password::Password,
    people::{Membership, Role, User},
    people_service::{AccountKeyPatch, LoginInput, NewAccountKey},
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{
    AppState,
    dto::{ErrorEnvelope, IssuedKeyResponse, KeyResponse, RotateKeyRequest, SecretString},
    error::ApiError,
    extract::request_context,
    extract::{Json, OptionalJson},
    session::principal,
};

type Result<T, E = ApiError> = std::result::Result<T, E>;

fn double_option<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn parse_id<T: std::str::FromStr>(raw: &str) -> Result<T> {
    raw.parse().map_err(|_| ApiError::not_found())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    /// Which of your accounts to enter; default: the oldest membership.
    #[schema(value_type = Option<String>, pattern = "^acct_[0-6][0-9A-Za-z]{21}$")]
    pub account_id: Option<AccountId>,
    /// Also mint a temporary key carrying your role (6 h idle, 7 days at most).
    #[serde(default)]
    pub temporary_key: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserDto {
    #[schema(value_type = String)]
    pub id: UserId,
    pub email: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountSummary {
    #[schema(value_type = String)]
    pub id: AccountId,
    pub name: String,
    #[schema(value_type = String)]
    pub plan: keyward_domain::Plan,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MembershipDto {
    #[schema(value_type = String)]
    pub account_id: AccountId,
    pub name: String,
    #[schema(value_type = String)]
    pub role: Role,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    pub user: UserDto,
    /// The account entered; `null` for a login that belongs to no account yet, whose
    /// session may only see its invitations (`GET /v1/auth/invitations`), accept one by its
    /// link, and log out.
    pub account: Option<AccountSummary>,
    /// Your role in that account; `null` with it.
    #[schema(value_type = Option<String>, example = "owner")]
    pub role: Option<Role>,
    pub memberships: Vec<MembershipDto>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub session_expires_at: OffsetDateTime,
    /// Present when `temporary_key` was asked for; its plaintext is shown this once.
    pub temporary_key: Option<IssuedKeyResponse>,
    /// The password was chosen by someone else: this session may only change it
    /// (`POST /v1/account/password`) or log out, and no temporary key was minted.
    pub password_change_required: bool,
}

#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body(content = LoginRequest, example = json!({"email": "ada@example.com", "password": "correct horse battery staple"})),
    responses((status = 200, body = LoginResponse, description = "Sets the session cookie"),
        (status = 401, body = ErrorEnvelope), (status = 429, body = ErrorEnvelope)))]
pub async fn login<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    body: Json<LoginRequest>,
) -> Result<HttpResponse> {
    let LoginRequest { email, password, account_id, temporary_key } = body.into_inner()?;
    let input = LoginInput { email, password: Password::presented(password.0), account_id, temporary_key };
    let outcome = state.people.login(input, &request_context(&req)).await?;
    let now = state.service.now();
    let cookie = state.cookies.session_cookie(&outcome.token);
    let body = LoginResponse {
        user: UserDto { id: outcome.user.id, email: outcome.user.email.to_string() },
        account: outcome.account.as_ref().map(|(account, _)| AccountSummary {
            id: account.id,
            name: account.name.clone(),
            plan: account.plan,
        }),
        role: outcome.account.as_ref().map(|(_, role)| *role),
        memberships: outcome
            .memberships
            .iter()
            .map(|(m, name)| MembershipDto { account_id: m.account_id, name: name.clone(), role: m.role })
            .collect(),
        session_expires_at: outcome.session.expires_at(),
        temporary_key: outcome.temporary_key.as_ref().map(|t| IssuedKeyResponse::new(t, now)),
        password_change_required: outcome.session.password_change_required,
    };
    Ok(HttpResponse::Ok().cookie(cookie).json(body))
}

/// The session cookie of a route that takes a login rather than an account's principal:
/// a key gets 403 `session_required`, nothing 401.
pub(crate) fn session_token<S: Store, L: Admission>(
    state: &AppState<S, L>,
    req: &HttpRequest,
) -> Result<keyward_domain::people_service::SessionToken> {
    state.cookies.token_of(req).ok_or_else(|| match crate::extract::credential(req) {
        Ok(Some(_)) => keyward_domain::error::PeopleError::SessionRequired.into(),
        _ => ApiError::unauthorized(),
    })
}

#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "The session is over; its temporary key is revoked"), (status = 401, body = ErrorEnvelope)))]
pub async fn logout<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
) -> Result<HttpResponse> {
    let token = session_token(&state, &req)?;
    state.people.logout(&token, &request_context(&req)).await?;
    Ok(HttpResponse::NoContent().cookie(state.cookies.removal_cookie()).finish())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionResponse {
    pub user: UserDto,
    /// `null` for a login that belongs to no account yet.
    pub account: Option<AccountSummary>,
    #[schema(value_type = Option<String>)]
    pub role: Option<Role>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub session_expires_at: OffsetDateTime,
    /// When the current step-up window closes; `null` when none is open.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub step_up_expires_at: Option<OffsetDateTime>,
}

#[utoipa::path(get, path = "/v1/auth/session", tag = "auth",
    responses((status = 200, body = SessionResponse), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
pub async fn session<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
) -> Result<web::Json<SessionResponse>> {
    let token = session_token(&state, &req)?;
    let (session, user, account) = state.people.login_view(&token).await.map_err(|e| match e {
        keyward_domain::error::PeopleError::SignInRequired | keyward_domain::error::PeopleError::InvalidCredentials => {
            ApiError::unauthorized()
        }
        other => other.into(),
    })?;
    if session.password_change_required {
        return Err(keyward_domain::error::PeopleError::PasswordChangeRequired.into());
    }
    let now = state.service.now();
    Ok(web::Json(SessionResponse {
        user: UserDto { id: user.id, email: user.email.to_string() },
        account: account.as_ref().map(|(a, _)| AccountSummary { id: a.id, name: a.name.clone(), plan: a.plan }),
        role: account.map(|(_, role)| role),
        session_expires_at: session.expires_at(),
        step_up_expires_at: session.step_up_expires_at().filter(|at| *at > now),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyPasswordRequest {
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyPasswordResponse {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub step_up_expires_at: OffsetDateTime,
}

#[utoipa::path(post, path = "/v1/account/verify-password", tag = "auth", request_body(content = VerifyPasswordRequest, example = json!({"password": "correct horse battery staple"})),
    responses((status = 200, body = VerifyPasswordResponse), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
pub async fn verify_password<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    body: Json<VerifyPasswordRequest>,
) -> Result<web::Json<VerifyPasswordResponse>> {
    let principal = principal(&state, &req).await?;
    let until = state
        .people
        .verify_password(&principal, Password::presented(body.into_inner()?.password.0), &request_context(&req))
        .await?;
    Ok(web::Json(VerifyPasswordResponse { step_up_expires_at: until }))
}

// --- users ----------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberResponse {
    #[schema(value_type = String)]
    pub id: UserId,
    pub email: String,
    #[schema(value_type = String)]
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub member_since: OffsetDateTime,
}

impl MemberResponse {
    fn new(user: &User, membership: &Membership) -> Self {
        Self { id: user.id, email: user.email.to_string(), role: membership.role, member_since: membership.created_at }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberListResponse {
    pub data: Vec<MemberResponse>,
}

#[utoipa::path(get, path = "/v1/account/users", tag = "users",
    responses((status = 200, body = MemberListResponse), (status = 403, body = ErrorEnvelope)))]
pub async fn list_users<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
) -> Result<web::Json<MemberListResponse>> {
    let principal = principal(&state, &req).await?;
    let members = state.people.list_users(&principal).await?;
    Ok(web::Json(MemberListResponse { data: members.iter().map(|(u, m)| MemberResponse::new(u, m)).collect() }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    #[schema(value_type = crate::dto::schema::RoleName)]
    pub role: Role,
}

#[utoipa::path(patch, path = "/v1/account/users/{id}", tag = "users", request_body(content = UpdateUserRequest, example = json!({"role": "member"})), params(("id" = String, Path)),
    responses((status = 200, body = MemberResponse), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn update_user<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    id: web::Path<String>,
    body: Json<UpdateUserRequest>,
) -> Result<web::Json<MemberResponse>> {
    let principal = principal(&state, &req).await?;
    let (user, membership) =
        state.people.set_user_role(&principal, parse_id(&id)?, body.into_inner()?.role, &request_context(&req)).await?;
    Ok(web::Json(MemberResponse::new(&user, &membership)))
}

#[utoipa::path(delete, path = "/v1/account/users/{id}", tag = "users", params(("id" = String, Path)),
    responses((status = 204, description = "Removed from the account; their sessions in it end"), (status = 403, body = ErrorEnvelope)))]
pub async fn remove_user<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let principal = principal(&state, &req).await?;
    state.people.remove_user(&principal, parse_id(&id)?, &request_context(&req)).await?;
    Ok(HttpResponse::NoContent().finish())
}

// --- account keys ---------------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccountKeyRequest {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$",
        example = "ansible-prod"
    )]
    pub name: String,
    /// Management scopes, at most those of your role.
    #[schema(value_type = Vec<crate::dto::schema::ManagementScopeName>, min_items = 1, example = json!(["keys:read", "keys:write"]))]
    pub scopes: Vec<String>,
    #[schema(max_length = 1000, pattern = r"^[^\u0000]*$")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "crate::timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    #[schema(max_items = 100, example = json!(["203.0.113.0/24"]))]
    pub ip_allowlist: Option<Vec<String>>,
}

#[utoipa::path(post, path = "/v1/account/keys", tag = "account keys", request_body(content = CreateAccountKeyRequest, example = json!({"name": "CI deploys", "scopes": ["keys:read", "keys:write"]})),
    responses((status = 201, body = IssuedKeyResponse), (status = 403, body = ErrorEnvelope)))]
pub async fn create_account_key<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    body: Json<CreateAccountKeyRequest>,
) -> Result<HttpResponse> {
    let principal = principal(&state, &req).await?;
    let CreateAccountKeyRequest { name, scopes, description, expires_at, ip_allowlist } = body.into_inner()?;
    let input = NewAccountKey { name, scopes, description, expires_at, ip_allowlist };
    let issued = state.people.create_account_key(&principal, input, &request_context(&req)).await?;
    Ok(HttpResponse::Created().json(IssuedKeyResponse::new(&issued, state.service.now())))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountKeyListResponse {
    pub data: Vec<KeyResponse>,
}

#[utoipa::path(get, path = "/v1/account/keys", tag = "account keys",
    responses((status = 200, body = AccountKeyListResponse), (status = 403, body = ErrorEnvelope)))]
pub async fn list_account_keys<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
) -> Result<web::Json<AccountKeyListResponse>> {
    let principal = principal(&state, &req).await?;
    let keys = state.people.list_account_keys(&principal).await?;
    let now = state.service.now();
    Ok(web::Json(AccountKeyListResponse { data: keys.iter().map(|k| KeyResponse::new(k, now)).collect() }))
}

#[utoipa::path(get, path = "/v1/account/keys/{id}", tag = "account keys", params(("id" = String, Path)),
    responses((status = 200, body = KeyResponse), (status = 404, body = ErrorEnvelope)))]
pub async fn get_account_key<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<web::Json<KeyResponse>> {
    let principal = principal(&state, &req).await?;
    let key = state.people.get_account_key(&principal, parse_id::<KeyId>(&id)?).await?;
    Ok(web::Json(KeyResponse::new(&key, state.service.now())))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccountKeyRequest {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$",
        example = "ansible-prod"
    )]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(max_length = 1000, pattern = r"^[^\u0000]*$")]
    pub description: Option<Option<String>>,
    /// Changing scopes needs the step-up window, like minting a key.
    #[schema(value_type = Option<Vec<crate::dto::schema::ManagementScopeName>>, min_items = 1)]
    pub scopes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::timestamp::double_option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Option<OffsetDateTime>>,
    #[schema(max_items = 100)]
    pub ip_allowlist: Option<Vec<String>>,
    pub is_active: Option<bool>,
}

#[utoipa::path(patch, path = "/v1/account/keys/{id}", tag = "account keys", params(("id" = String, Path)), request_body(content = UpdateAccountKeyRequest, example = json!({"name": "CI deploys (rotated yearly)"})),
    responses((status = 200, body = KeyResponse), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn update_account_key<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    id: web::Path<String>,
    body: Json<UpdateAccountKeyRequest>,
) -> Result<web::Json<KeyResponse>> {
    let principal = principal(&state, &req).await?;
    let UpdateAccountKeyRequest { name, description, scopes, expires_at, ip_allowlist, is_active } =
        body.into_inner()?;
    let patch = AccountKeyPatch { name, description, scopes, expires_at, ip_allowlist, is_active };
    let key = state.people.update_account_key(&principal, parse_id(&id)?, patch, &request_context(&req)).await?;
    Ok(web::Json(KeyResponse::new(&key, state.service.now())))
}

#[utoipa::path(delete, path = "/v1/account/keys/{id}", tag = "account keys", params(("id" = String, Path)),
    responses((status = 200, body = crate::dto::RevokeKeyResponse), (status = 404, body = ErrorEnvelope)))]
pub async fn revoke_account_key<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<web::Json<crate::dto::RevokeKeyResponse>> {
    let principal = principal(&state, &req).await?;
    let key = state.people.revoke_account_key(&principal, parse_id(&id)?, &request_context(&req)).await?;
    let revoked_at = key.revoked_at.ok_or_else(ApiError::internal)?;
    Ok(web::Json(crate::dto::RevokeKeyResponse { id: key.id, revoked_at }))
}

#[utoipa::path(post, path = "/v1/account/keys/{id}/rotate", tag = "account keys", params(("id" = String, Path)),
    request_body(content = Option<RotateKeyRequest>, example = json!({"grace_period_seconds": 86400})),
    responses((status = 201, body = IssuedKeyResponse), (status = 403, body = ErrorEnvelope)))]
pub async fn rotate_account_key<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    id: web::Path<String>,
    body: OptionalJson<RotateKeyRequest>,
) -> Result<HttpResponse> {
    let principal = principal(&state, &req).await?;
    let issued = state
        .people
        .rotate_account_key(&principal, parse_id(&id)?, body.into_inner()?.grace_period_seconds, &request_context(&req))
        .await?;
    Ok(HttpResponse::Created().json(IssuedKeyResponse::new(&issued, state.service.now())))
}
