//! Sessions over HTTP: the cookie (SPEC §3), CSRF defences for cookie-authenticated
//! requests, and resolving any credential — API key or cookie — into a `Principal`.

use actix_web::{
    HttpMessage, HttpRequest, HttpResponse,
    body::{EitherBody, MessageBody},
    cookie::{Cookie, SameSite, time::Duration as CookieDuration},
    dev::{ServiceRequest, ServiceResponse},
    http::{Method, header},
    middleware::Next,
    web,
};
use keyward_domain::ratelimit::Admission;
use keyward_domain::{
    Store,
    key_service::{Principal, Via},
    people::SESSION_ABSOLUTE_TIMEOUT,
    people_service::SessionToken,
};

use crate::{
    AppState,
    error::{ApiError, ErrorCode},
    extract::{client_ip, credential},
    limits::{enforce, enforce_in_instance},
};

/// How the session cookie is named and marked.
#[derive(Debug, Clone)]
pub struct CookieSettings {
    /// `__Host-keyward_session` over HTTPS (the browser then insists on Secure, Path=/ and
    /// no Domain), `keyward_session` otherwise.
    pub name: &'static str,
    pub secure: bool,
    /// `scheme://host[:port]` of the configured public URL: the only `Origin` a cookie
    /// request may carry. `None` without one: the request's own `Host` (see [`Self::admits`]).
    pub origin: Option<String>,
}

impl CookieSettings {
    pub fn for_public_url(public_url: &str) -> Self {
        let secure = public_url.starts_with("https://");
        let origin = public_url
            .split_once("://")
            .map(|(scheme, rest)| format!("{scheme}://{}", rest.split('/').next().unwrap_or_default()))
            .unwrap_or_default()
            .to_lowercase();
        Self { name: if secure { "__Host-keyward_session" } else { "keyward_session" }, secure, origin: Some(origin) }
    }

    /// Without a configured public URL, Keyward is whatever host a browser reached it by
    /// (`localhost:8080`, `127.0.0.1:8080`, a machine's name): a cookie request's `Origin`
    /// must name the host the request itself was sent to. A cross-site page cannot make a
    /// browser send Keyward's cookie with a `Host` of Keyward's and an `Origin` that
    /// matches it, so this is the same-origin check, without a URL to configure.
    pub fn for_any_host() -> Self {
        Self { name: "keyward_session", secure: false, origin: None }
    }

    /// Whether `origin` (lower-cased) is this service's, for the request `req`.
    pub fn admits(&self, origin: &str, req: &HttpRequest) -> bool {
        match &self.origin {
            Some(configured) => origin == configured,
            None => {
                let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
                origin.split_once("://").is_some_and(|(scheme, rest)| {
                    matches!(scheme, "http" | "https") && !host.is_empty() && rest.eq_ignore_ascii_case(host)
                })
            }
        }
    }

    pub fn session_cookie(&self, token: &SessionToken) -> Cookie<'static> {
        Cookie::build(self.name, token.expose_secret().to_owned())
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(self.secure)
            .path("/")
            .max_age(CookieDuration::seconds(SESSION_ABSOLUTE_TIMEOUT.whole_seconds()))
            .finish()
    }

    pub fn removal_cookie(&self) -> Cookie<'static> {
        let mut cookie = Cookie::build(self.name, "")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(self.secure)
            .path("/")
            .finish();
        cookie.make_removal();
        cookie
    }

    pub fn token_of(&self, req: &HttpRequest) -> Option<SessionToken> {
        req.cookie(self.name).map(|c| SessionToken::new(c.value().to_owned())).filter(|t| !t.expose_secret().is_empty())
    }
}

fn csrf_rejected(why: &str) -> ApiError {
    ApiError::new(ErrorCode::CsrfRejected, format!("cookie-authenticated request refused: {why}"))
}

/// Refuses a state-changing request that rides on the session cookie when it comes from
/// another origin or is not JSON (a cross-site form or `no-cors` fetch cannot send
/// `application/json` without a CORS preflight, which Keyward never grants). Requests
/// carrying an API key are not at risk and pass. Runs before any body is read.
pub async fn csrf_guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if let Some(refusal) = csrf_refusal(req.request()) {
        // A response carrying the error, so the envelope middleware renders it
        // (`ServiceRequest::into_response` would drop the error on the way).
        let (request, _) = req.into_parts();
        return Ok(ServiceResponse::new(request, HttpResponse::from_error(refusal)).map_into_right_body());
    }
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}

/// [`csrf_guard`] as an extractor, for the verification routes, which skip the management
/// middlewares. Listed before the body, it refuses before the body is read.
#[derive(Debug, Clone, Copy)]
pub struct CsrfChecked;

impl actix_web::FromRequest for CsrfChecked {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(csrf_refusal(req).map_or(Ok(Self), Err))
    }
}

/// The check of [`csrf_guard`], for the verification routes, which skip the management
/// middlewares: `None` when the request may proceed.
pub(crate) fn csrf_refusal(req: &HttpRequest) -> Option<ApiError> {
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let settings = req.app_data::<web::Data<CookieSettings>>()?;
    if !(unsafe_method && settings.token_of(req).is_some() && credential(req).ok().flatten().is_none()) {
        return None;
    }
    let headers = req.headers();
    let origin = headers.get(header::ORIGIN).map(|o| o.to_str().unwrap_or_default().to_lowercase());
    let json = req.mime_type().ok().flatten().is_some_and(|m| m.essence_str() == "application/json");
    let why = if origin.is_some_and(|o| !settings.admits(&o, req)) {
        "the Origin is not this service's"
    } else if headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site")) {
        "Sec-Fetch-Site is cross-site"
    } else if *req.method() != Method::DELETE && !json {
        "the body must be application/json"
    } else {
        return None;
    };
    Some(csrf_rejected(why))
}

/// Who made the request and from where, for the audit trail and login throttling.
/// What a caller is about to do, which decides the limits it meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// The management API: per-IP, per-key, per-account and per-endpoint limits.
    Management,
    /// `POST /v1/keys/verify`: the verification limit only.
    Verification,
}

/// Resolves the request's credential for the management API (see [`authorize`]).
pub async fn principal<S: Store, L: Admission>(
    state: &AppState<S, L>,
    req: &HttpRequest,
) -> Result<Principal, ApiError> {
    authorize(state, req, Purpose::Management).await
}

/// Resolves the request's credential — an account or temporary key, or the session cookie;
/// both at once are ambiguous (400) — and applies the rate limits of `purpose`.
pub(crate) async fn authorize<S: Store, L: Admission>(
    state: &AppState<S, L>,
    req: &HttpRequest,
    purpose: Purpose,
) -> Result<Principal, ApiError> {
    let now = state.service.now();
    let limits = &state.api_limits;
    // The IP limit was applied before anything else, by the journal (`limit_ip`).
    let principal = authenticate(state, req).await?;
    let account = principal.account_id;
    // Known from here on: what follows, a refusal included, is audited as theirs.
    req.extensions_mut().insert(crate::audit::Caller { account, actor: principal.actor() });
    if principal.password_change_required() && !crate::routes::open_before_password_change(req.method(), req.path()) {
        return Err(keyward_domain::error::PeopleError::PasswordChangeRequired.into());
    }
    match purpose {
        Purpose::Management => {
            let who = match principal.via {
                Via::Key { id, .. } => id.to_string(),
                Via::Session { user_id, .. } => user_id.to_string(),
            };
            enforce(&*state.limits, req, "key", format!("key:{who}").as_bytes(), &limits.key_rules(), now).await?;
            enforce(
                &*state.limits,
                req,
                "account",
                format!("account:{account}").as_bytes(),
                &limits.account_rules(),
                now,
            )
            .await?;
            if let Some((endpoint, rules)) = limits.endpoint_rules(req) {
                enforce(
                    &*state.limits,
                    req,
                    "endpoint",
                    format!("endpoint:{account}:{endpoint}").as_bytes(),
                    &rules,
                    now,
                )
                .await?;
            }
            crate::idempotency::claim(state, req, &principal, now).await?;
        }
        Purpose::Verification => {
            // The subject on the stack: this runs on every verification.
            let subject =
                crate::headers::StackText::format(format_args!("verify:{account}")).ok_or_else(ApiError::internal)?;
            // Kept by this instance alone (see `limits`): no round trip to shared state.
            enforce_in_instance(&*state.limits, req, "account", subject.as_bytes(), &limits.verify_rules(), now)
                .await?;
        }
    }
    Ok(principal)
}

/// The per-IP limit of the management API, which the journal applies before any other
/// work. Verification is exempt: its callers are a few servers sending most of the traffic.
pub async fn limit_ip<S: Store, L: Admission>(state: &AppState<S, L>, req: &HttpRequest) -> Result<(), ApiError> {
    let Some(ip) = client_ip(req) else { return Ok(()) };
    let subject = format!("ip:{}", keyward_domain::throttle::client_subnet(ip));
    enforce(&*state.limits, req, "ip", subject.as_bytes(), &state.api_limits.ip_rules(), state.service.now()).await
}

async fn authenticate<S: Store, L: Admission>(
    state: &AppState<S, L>,
    req: &HttpRequest,
) -> Result<Principal, ApiError> {
    let key = credential(req)?;
    let token = state.cookies.token_of(req);
    match (key, token) {
        (Some(_), Some(_)) => {
            Err(ApiError::new(ErrorCode::AmbiguousCredentials, "send an API key or the session cookie, not both"))
        }
        (Some(credential), None) => {
            let principal = state.service.authenticate_management(&credential.key, client_ip(req)).await?;
            if credential.basic_account.is_some_and(|account| account != principal.account_id) {
                return Err(ApiError::unauthorized());
            }
            Ok(principal)
        }
        (None, Some(token)) => Ok(state.people.authenticate_session(&token).await?.0),
        (None, None) => Err(ApiError::unauthorized()),
    }
}
