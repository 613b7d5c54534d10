//! Who is looking at a page: the session cookie resolved as the API resolves it (the same
//! per-IP, per-person and per-account limits).

use actix_web::{HttpRequest, web};
use keyward_domain::{Account, Store, UserId, key_service::Principal, people::Role, ratelimit::Admission};
use keyward_http::{AppState, error::ApiError, session};

/// The signed-in person a page is rendered for.
#[derive(Debug)]
pub struct Viewer {
    pub principal: Principal,
    pub user_id: UserId,
    pub email: String,
    pub account: Account,
    pub role: Role,
}

/// The viewer of `req`, or the API's refusal (no session, a one-time password still to
/// change, a limit, the storage), which `pages::refusal` turns into what a browser gets.
pub async fn viewer<S: Store, L: Admission>(
    state: &web::Data<AppState<S, L>>,
    req: &HttpRequest,
) -> Result<Viewer, ApiError> {
    if state.cookies.token_of(req).is_none() {
        return Err(ApiError::unauthorized());
    }
    session::limit_ip(state, req).await?;
    let principal = session::principal(state, req).await?;
    let (user, account, role) = state.people.current_user(&principal).await?;
    Ok(Viewer { principal, user_id: user.id, email: user.email.to_string(), account, role })
}

impl Viewer {
    /// Whether the person's role grants `scope` — the check the API makes of the same call,
    /// so a page offers only what would succeed and says why otherwise.
    pub fn may(&self, scope: &str) -> bool {
        self.principal.scopes.grants_str(scope)
    }
}
