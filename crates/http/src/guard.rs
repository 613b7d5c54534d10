//! Guarding an embedding service's own routes with Keyward keys: an actix-web middleware
//! over the domain's embedded [`Verifier`].
//!
//! ```ignore
//! App::new()
//!     .wrap(actix_web::middleware::from_fn(keyward_http::error::envelope)) // the error bodies
//!     .service(
//!         web::scope("/servers")
//!             .wrap(KeyGuard::new(verifier.clone()).require_scopes(["server:list"]))
//!             .route("", web::get().to(list_servers)), // takes a `VerifiedKey`
//!     )
//! ```
//!
//! For every request the guard reads the key (`Authorization: Bearer`, `X-API-Key` or
//! Basic, as Keyward's own API), verifies it with the customer's address (the socket peer,
//! or `X-Forwarded-For` behind `TrustedProxies` in the app data), and either refuses the
//! request — 401 `unauthorized` for a missing, unknown, revoked or expired key; 403
//! `key_inactive`, `ip_not_allowed`, `forbidden` (wrong resource) or `insufficient_scope`;
//! 429 `rate_limited` or `quota_exhausted` with `Retry-After` — or passes it on with the
//! key in the request's extensions ([`VerifiedKey`]). Either way it meters the request
//! with the route pattern, method, status and latency; nothing is written on the way.
//!
//! Refusals are [`ApiError`]s: wrap the app in [`envelope`](crate::error::envelope) to
//! render them as Keyward's error envelope.

use std::{future::Future, pin::Pin, rc::Rc, sync::Arc, time::Instant};

use actix_web::{
    Error, FromRequest, HttpMessage, HttpRequest,
    body::EitherBody,
    dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready},
    http::StatusCode,
};
use futures_util::future::{Ready, ready};
use keyward_domain::{
    Store, VerifiableKey, VerifyCode,
    embedded::{RequestUsage, Verifier},
    key_service::{VerifyInput, VerifyOutcome},
    ratelimit::Admission,
};

use crate::{
    error::{ApiError, ErrorCode},
    extract::{client_ip, credential},
};

/// The middleware; see the module docs. Clone it freely: the verifier is shared.
#[derive(Debug)]
pub struct KeyGuard<S, A> {
    verifier: Arc<Verifier<S, A>>,
    scopes: Rc<[String]>,
}

impl<S, A> Clone for KeyGuard<S, A> {
    fn clone(&self) -> Self {
        Self { verifier: self.verifier.clone(), scopes: self.scopes.clone() }
    }
}

impl<S, A> KeyGuard<S, A> {
    /// Admits any valid key of the verifier's account.
    pub fn new(verifier: Arc<Verifier<S, A>>) -> Self {
        Self { verifier, scopes: Rc::from([]) }
    }

    /// Admits only keys granting every one of `scopes` (`resource:action`; wildcards in the
    /// key's scopes apply). A malformed scope here makes every request fail closed with 500.
    #[must_use]
    pub fn require_scopes<I: IntoIterator<Item = T>, T: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }
}

/// The key that passed the guard, for handlers behind it: `async fn h(key: VerifiedKey)`.
#[derive(Debug, Clone)]
pub struct VerifiedKey(pub Arc<VerifiableKey>);

impl std::ops::Deref for VerifiedKey {
    type Target = VerifiableKey;

    fn deref(&self) -> &VerifiableKey {
        &self.0
    }
}

impl FromRequest for VerifiedKey {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Only behind a guard; anywhere else no key was verified, which is a 401.
        ready(req.extensions().get::<VerifiedKey>().cloned().ok_or_else(ApiError::unauthorized))
    }
}

impl<Svc, B, S, A> Transform<Svc, ServiceRequest> for KeyGuard<S, A>
where
    Svc: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
    S: Store + 'static,
    A: Admission,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = KeyGuardService<Svc, S, A>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: Svc) -> Self::Future {
        ready(Ok(KeyGuardService { service: Rc::new(service), guard: self.clone() }))
    }
}

#[derive(Debug)]
pub struct KeyGuardService<Svc, S, A> {
    service: Rc<Svc>,
    guard: KeyGuard<S, A>,
}

impl<Svc, B, S, A> Service<ServiceRequest> for KeyGuardService<Svc, S, A>
where
    Svc: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
    S: Store + 'static,
    A: Admission,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Error>>>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let (service, guard) = (self.service.clone(), self.guard.clone());
        Box::pin(async move {
            let started = Instant::now();
            let ip = client_ip(req.request());
            // Refusals are answered here, as responses carrying their `ApiError`, so that an
            // outer `envelope` renders them like every other Keyward error.
            let credential = match credential(req.request()) {
                Ok(Some(credential)) => credential,
                Ok(None) => return Ok(req.error_response(ApiError::unauthorized()).map_into_right_body()),
                Err(error) => return Ok(req.error_response(error).map_into_right_body()),
            };
            // Basic auth names the account, and this verifier finds one account's keys only:
            // another name can match no key, so it is refused before any lookup.
            if credential.basic_account.is_some_and(|account| account != guard.verifier.account()) {
                return Ok(req.error_response(ApiError::unauthorized()).map_into_right_body());
            }
            let input = VerifyInput { scopes: guard.scopes.to_vec(), ip, ..VerifyInput::key(credential.key) };
            let outcome = match guard.verifier.check(&input).await {
                Ok(outcome) => outcome,
                Err(error) => {
                    // Invalid input here can only be the guard's own scopes: a setup mistake.
                    tracing::error!(%error, "the key guard could not verify a key");
                    return Ok(req.error_response(ApiError::from(error)).map_into_right_body());
                }
            };
            // An unknown key has nothing to meter it under: refused before building a record.
            let Some(key) = outcome.key.clone() else {
                return Ok(req.error_response(refusal(&outcome)).map_into_right_body());
            };
            // The route pattern, never the raw path, which may carry anything a client typed.
            let endpoint = req.match_pattern().unwrap_or_else(|| req.path().to_owned());
            let method = req.method().as_str().to_owned();
            let usage = move |status: StatusCode| RequestUsage {
                endpoint: Some(endpoint),
                method: Some(method),
                status_code: Some(status.as_u16()),
                response_time_us: Some(keyward_domain::usage::micros(started.elapsed())),
                ip,
            };
            if outcome.code != VerifyCode::Valid {
                let refusal = refusal(&outcome);
                guard.verifier.record(&outcome, usage(refusal.status));
                return Ok(req.error_response(refusal).map_into_right_body());
            }
            req.extensions_mut().insert(VerifiedKey(key));
            let result = service.call(req).await;
            let status = match &result {
                Ok(response) => response.status(),
                Err(error) => error.as_response_error().status_code(),
            };
            guard.verifier.record(&outcome, usage(status));
            result.map(ServiceResponse::map_into_left_body)
        })
    }
}

/// The HTTP answer to a verdict other than `VALID`.
fn refusal(outcome: &VerifyOutcome) -> ApiError {
    let forbidden = ApiError::new;
    let retry_after = outcome.ratelimit.map_or(1, |d| d.reset_seconds.max(1));
    match outcome.code {
        // One answer for every "no usable key", no oracle. (VALID never reaches here.)
        VerifyCode::Valid | VerifyCode::NotFound | VerifyCode::Revoked | VerifyCode::Expired => {
            ApiError::unauthorized()
        }
        VerifyCode::Inactive => forbidden(ErrorCode::KeyInactive, "the key is disabled"),
        VerifyCode::IpNotAllowed => forbidden(ErrorCode::IpNotAllowed, "the key may not be used from this address"),
        VerifyCode::WrongResource => forbidden(ErrorCode::Forbidden, "the key is bound to another resource"),
        VerifyCode::InsufficientScope => {
            forbidden(ErrorCode::InsufficientScope, "the key lacks a scope this route requires")
        }
        // Forward auth only; a guard has no route rules.
        VerifyCode::RouteNotAllowed => forbidden(ErrorCode::RouteNotAllowed, "no key may pass to this route"),
        VerifyCode::RateLimited => ApiError {
            retry: Some(("key", retry_after)),
            ..ApiError::new(ErrorCode::RateLimited, "the key's rate limit is reached")
        },
        // No Retry-After: when credits come back (a refill, a top-up) is not known here.
        VerifyCode::QuotaExhausted => ApiError::new(ErrorCode::QuotaExhausted, "the key's quota is used up"),
    }
}
