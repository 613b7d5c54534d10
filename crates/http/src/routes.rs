//! The route table: every route the API serves, with what the layers around the handlers
//! need to know of it — its audit action, whether it hashes a password, whether a session
//! that must change its password may call it. `app` registers no route this table does not
//! list (`resource` checks each registration), and a test calls every route the table
//! lists, so the two cannot drift apart.

use actix_web::http::Method;
use keyward_domain::audit::Action;

/// One method of one route.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    pub method: &'static str,
    /// As registered, with `{param}`s: what `HttpRequest::match_pattern` answers.
    pub path: &'static str,
    /// The event of a call with no event of its use case's; `None`: not audited (the
    /// verification routes, health, documentation).
    pub action: Option<Action>,
    /// Hashes a password (a login, step-up, a password change, a new user's generated
    /// password): it takes a turn at the hasher before its unit of work.
    pub hashes_password: bool,
    /// Open to a session that must change its password first.
    pub open_before_password_change: bool,
    /// The credentials it takes (what the OpenAPI document declares as its security).
    pub credentials: Credentials,
}

/// The credentials a route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    /// None: public, or its own (the login's password, the scrape token).
    None,
    /// A key in any of its forms (Bearer, X-API-Key, Basic): the key itself.
    Key,
    /// A key or the session cookie.
    KeyOrSession,
    /// The session cookie: a key is refused with 403 `session_required` (what a person does,
    /// with their password at hand).
    Session,
}

const fn route(method: &'static str, path: &'static str, action: Option<Action>) -> RouteSpec {
    RouteSpec {
        method,
        path,
        action,
        hashes_password: false,
        open_before_password_change: false,
        credentials: Credentials::KeyOrSession,
    }
}

const fn public(spec: RouteSpec) -> RouteSpec {
    RouteSpec { credentials: Credentials::None, ..spec }
}

const fn key_only(spec: RouteSpec) -> RouteSpec {
    RouteSpec { credentials: Credentials::Key, ..spec }
}

const fn session_only(spec: RouteSpec) -> RouteSpec {
    RouteSpec { credentials: Credentials::Session, ..spec }
}

const fn hashing(spec: RouteSpec) -> RouteSpec {
    RouteSpec { hashes_password: true, ..spec }
}

const fn allowed_before_password_change(spec: RouteSpec) -> RouteSpec {
    RouteSpec { open_before_password_change: true, ..spec }
}

use Action as A;

/// The prefix of the forward-auth routes (`gateway`), which answer in JSON whatever the
/// client accepts: a gateway passes its client's `Accept` on.
pub const FORWARD_AUTH_PREFIX: &str = "/v1/forward-auth/";

pub const ROUTES: &[RouteSpec] = &[
    route("POST", "/v1/keys/verify", None),
    // Forward auth, for each method a gateway asks with (`gateway::FORWARD_AUTH_METHODS`):
    // public (the key is the client's, not the caller's) and unaudited, as verification.
    public(route("GET", "/v1/forward-auth/{id}", None)),
    public(route("HEAD", "/v1/forward-auth/{id}", None)),
    public(route("POST", "/v1/forward-auth/{id}", None)),
    public(route("PUT", "/v1/forward-auth/{id}", None)),
    public(route("PATCH", "/v1/forward-auth/{id}", None)),
    public(route("DELETE", "/v1/forward-auth/{id}", None)),
    public(route("OPTIONS", "/v1/forward-auth/{id}", None)),
    public(route("GET", "/v1/forward-auth/{id}/{path}", None)),
    public(route("HEAD", "/v1/forward-auth/{id}/{path}", None)),
    public(route("POST", "/v1/forward-auth/{id}/{path}", None)),
    public(route("PUT", "/v1/forward-auth/{id}/{path}", None)),
    public(route("PATCH", "/v1/forward-auth/{id}/{path}", None)),
    public(route("DELETE", "/v1/forward-auth/{id}/{path}", None)),
    public(route("OPTIONS", "/v1/forward-auth/{id}/{path}", None)),
    key_only(route("GET", "/v1/keys/self", None)),
    key_only(route("POST", "/v1/keys/self/revoke", None)),
    public(route("POST", "/v1/leaks/github", None)),
    public(route("POST", "/v1/leaks/revoke", None)),
    public(route("GET", "/metrics", None)),
    public(route("GET", "/healthz", None)),
    public(route("GET", "/readyz", None)),
    public(route("GET", "/v1/openapi.json", None)),
    public(route("GET", "/v1", None)),
    public(route("GET", "/docs/errors/{code}", None)),
    route("GET", "/v1/account", Some(A::AccountRead)),
    public(hashing(route("POST", "/v1/auth/login", Some(A::Login)))),
    allowed_before_password_change(session_only(route("POST", "/v1/auth/logout", Some(A::Logout)))),
    session_only(route("GET", "/v1/auth/session", Some(A::SessionRead))),
    hashing(session_only(route("POST", "/v1/account/verify-password", Some(A::VerifyPassword)))),
    allowed_before_password_change(hashing(session_only(route(
        "POST",
        "/v1/account/password",
        Some(A::PasswordChange),
    )))),
    allowed_before_password_change(session_only(route("GET", "/v1/auth/invitations", Some(A::InvitationList)))),
    public(route("POST", "/v1/auth/password-reset", Some(A::PasswordResetRequest))),
    public(hashing(route("POST", "/v1/auth/password-reset/{token}", Some(A::PasswordReset)))),
    public(route("GET", "/v1/invitations/{token}", Some(A::InvitationRead))),
    public(route("DELETE", "/v1/invitations/{token}", Some(A::InvitationDecline))),
    public(hashing(route("POST", "/v1/invitations/{token}/accept", Some(A::InvitationAccept)))),
    route("GET", "/v1/account/users", Some(A::UserList)),
    session_only(route("POST", "/v1/account/users", Some(A::UserInvite))),
    session_only(route("PATCH", "/v1/account/users/{id}", Some(A::UserUpdate))),
    session_only(route("DELETE", "/v1/account/users/{id}", Some(A::UserRemove))),
    route("GET", "/v1/account/invitations", Some(A::SentInvitationList)),
    session_only(route("DELETE", "/v1/account/invitations/{id}", Some(A::InvitationWithdraw))),
    session_only(route("GET", "/v1/account/keys", Some(A::AccountKeyList))),
    session_only(route("POST", "/v1/account/keys", Some(A::AccountKeyCreate))),
    session_only(route("GET", "/v1/account/keys/{id}", Some(A::AccountKeyRead))),
    session_only(route("PATCH", "/v1/account/keys/{id}", Some(A::AccountKeyUpdate))),
    session_only(route("DELETE", "/v1/account/keys/{id}", Some(A::AccountKeyRevoke))),
    session_only(route("POST", "/v1/account/keys/{id}/rotate", Some(A::AccountKeyRotate))),
    route("GET", "/v1/keyspaces", Some(A::KeyspaceList)),
    route("POST", "/v1/keyspaces", Some(A::KeyspaceCreate)),
    route("GET", "/v1/keyspaces/{id}", Some(A::KeyspaceRead)),
    route("PATCH", "/v1/keyspaces/{id}", Some(A::KeyspaceUpdate)),
    route("DELETE", "/v1/keyspaces/{id}", Some(A::KeyspaceDelete)),
    route("GET", "/v1/keyspaces/{id}/routes", Some(A::KeyspaceRoutesRead)),
    route("PUT", "/v1/keyspaces/{id}/routes", Some(A::KeyspaceRoutesUpdate)),
    route("GET", "/v1/keys", Some(A::KeyList)),
    route("POST", "/v1/keys", Some(A::KeyCreate)),
    route("POST", "/v1/keys/import", Some(A::KeyImport)),
    route("GET", "/v1/keys/{id}", Some(A::KeyRead)),
    route("PATCH", "/v1/keys/{id}", Some(A::KeyUpdate)),
    route("DELETE", "/v1/keys/{id}", Some(A::KeyRevoke)),
    route("POST", "/v1/keys/{id}/rotate", Some(A::KeyRotate)),
    route("GET", "/v1/keys/{id}/usage", Some(A::UsageRead)),
    route("GET", "/v1/stats", Some(A::StatsRead)),
    route("GET", "/v1/audit", Some(A::AuditList)),
    route("GET", "/v1/webhooks", Some(A::WebhookList)),
    route("POST", "/v1/webhooks", Some(A::WebhookCreate)),
    route("GET", "/v1/webhooks/{id}", Some(A::WebhookRead)),
    route("PATCH", "/v1/webhooks/{id}", Some(A::WebhookUpdate)),
    route("DELETE", "/v1/webhooks/{id}", Some(A::WebhookDelete)),
    route("POST", "/v1/webhooks/{id}/rotate-secret", Some(A::WebhookRotateSecret)),
    route("GET", "/v1/webhooks/{id}/attempts", Some(A::WebhookAttemptList)),
    route("POST", "/v1/webhooks/{id}/messages/{message_id}/retry", Some(A::WebhookRetry)),
];

/// The route of a method and a registered path (a pattern with its `{param}`s, or a path
/// without any, which is its own pattern).
pub fn find(method: &Method, path: &str) -> Option<&'static RouteSpec> {
    ROUTES.iter().find(|r| r.method == method.as_str() && r.path == path)
}

/// Calls to `/v1/` are audited, whatever their method — any path that matched no route
/// included — but for the paths of unaudited routes (verification, the OpenAPI document).
pub fn audited(path: &str) -> bool {
    path.starts_with("/v1/") && !ROUTES.iter().any(|route| route.path == path && route.action.is_none())
}

/// The action of a call that matched `pattern` (`None`: no route matched).
pub fn action_of(method: &Method, pattern: Option<&str>) -> Action {
    pattern.and_then(|p| find(method, p)).and_then(|route| route.action).unwrap_or(Action::Request)
}

/// Whether the call hashes a password (see [`RouteSpec::hashes_password`]); `pattern`
/// is the route the request matched, for routes with parameters.
pub fn hashes_password(method: &Method, path: &str, pattern: Option<&str>) -> bool {
    find(method, path).or_else(|| pattern.and_then(|p| find(method, p))).is_some_and(|route| route.hashes_password)
}

/// Whether a session that must change its password may make the call.
pub fn open_before_password_change(method: &Method, path: &str) -> bool {
    find(method, path).is_some_and(|route| route.open_before_password_change)
}
