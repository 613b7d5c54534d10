//! Keyward's HTTP adapter: the management and verification API of SPEC §4 on actix-web.
//!
//! [`app`] builds the whole application — routes, body limits, the error envelope — so the
//! server and the tests run exactly the same thing.
//!
//! Architecture invariant: this crate holds no business rule. It parses requests into domain
//! inputs, calls `KeyService`, and renders results and errors; the mapping from domain errors
//! to status codes lives in `error.rs` and nowhere else. It knows nothing of the storage
//! behind the `Store` it is given.

pub mod audit;
pub mod consent;
pub mod cursor;
pub mod docs;
pub mod dto;
pub mod error;
pub mod extract;
pub mod gateway;
pub mod guard;
pub mod handlers;
pub mod headers;
pub mod idempotency;
pub mod invitations;
pub mod journal;
pub mod leaks;
pub mod limits;
mod media;
pub mod metrics;
pub mod openapi;
pub mod password_reset;
pub mod people;
pub mod routes;
pub mod session;
pub mod telemetry;
pub mod timestamp;
pub mod webhooks;

use actix_web::{
    App, FromRequest, Handler, Responder, Route,
    body::MessageBody,
    dev::{ServiceFactory, ServiceRequest, ServiceResponse},
    http::Method,
    middleware::from_fn,
    web,
};
use std::sync::Arc;

use keyward_domain::{
    Store, audit::AuditSink, idempotency::Sealer, key_service::KeyService, people_service::PeopleService,
    ratelimit::Admission, throttle::LoginLimits,
};
use keyward_runtime::password::BlockingPasswordHasher;
pub use limits::ApiLimits;

pub use error::{ApiError, PublicUrl};
pub use extract::TrustedProxies;
use extract::{BodyLimit, IMPORT_BODY_LIMIT};
use handlers as h;
use people as p;
pub use session::CookieSettings;

/// What every handler shares. `L` is the rate limiter and quota ledger the binary chose
/// (`keyward_ratelimit::Limits`), named through the domain's `Admission` port so this crate
/// depends on no other adapter; a generic rather than a trait object keeps the hot path's
/// calls static.
#[derive(Debug)]
pub struct AppState<S, L> {
    pub service: KeyService<S>,
    pub people: PeopleService<S, BlockingPasswordHasher, L>,
    pub cookies: CookieSettings,
    /// The rate limiter and quota ledger (in process, or shared through Redis).
    pub limits: Arc<L>,
    pub api_limits: ApiLimits,
    /// Seals the responses kept for idempotent replay.
    pub sealer: Sealer,
    /// Usage records on their way to storage.
    pub meter: Arc<keyward_domain::meter::UsageMeter>,
    /// The password hasher the people use cases run on; the journal reserves its turns.
    pub hasher: BlockingPasswordHasher,
    /// Refusals of callers nobody knows (a 401, 404, 405, a malformed body, the per-IP
    /// limit): counted for `/metrics` instead of audited.
    pub anonymous_refusals: Arc<std::sync::atomic::AtomicU64>,
    /// Requests, verifications and limiter decisions, for OpenTelemetry and `/metrics`.
    pub instruments: telemetry::Instruments,
    /// The keys GitHub signs secret-scanning reports with; empty: such reports are refused.
    pub github_keys: leaks::GitHubKeyring,
    /// Set when the process has been asked to stop: `/readyz` answers 503 from then on, so
    /// that load balancers take this instance out while it finishes what it has.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

/// The policies of the HTTP layer: who may try how often, and the secret that seals
/// stored responses (`None`: a secret for this process only).
#[derive(Debug, Clone)]
pub struct Policies {
    pub login: LoginLimits,
    pub api: ApiLimits,
    pub secret: Option<[u8; 32]>,
    /// Usage records buffered before they are dropped (and counted).
    pub usage_buffer: usize,
    /// Where the instruments report (the binary's exporters); `None`: a private meter
    /// provider that only `/metrics` reads.
    pub telemetry: Option<keyward_telemetry::Telemetry>,
    /// GitHub's secret-scanning public keys (docs/leaks.md); empty: `POST /v1/leaks/github`
    /// answers 404.
    pub github_keys: leaks::GitHubKeyring,
    /// A mailer sends invitations' and resets' links (to the public URL); without one the
    /// inviting admin is shown the link, and no reset mail goes out.
    pub mail: bool,
}

impl Default for Policies {
    fn default() -> Self {
        Self {
            login: LoginLimits::default(),
            api: ApiLimits::default(),
            secret: None,
            usage_buffer: 100_000,
            telemetry: None,
            github_keys: leaks::GitHubKeyring::Off,
            mail: false,
        }
    }
}

impl<S: Store, L: Admission> AppState<S, L> {
    pub fn new(
        service: KeyService<S>,
        hasher: BlockingPasswordHasher,
        audit: Arc<dyn AuditSink>,
        limits: Arc<L>,
        policies: Policies,
        public_url: &str,
    ) -> Self {
        let mut people = PeopleService::new(service.clone(), hasher.clone(), audit, limits.clone(), policies.login);
        if policies.mail {
            people = people.with_mail(keyward_domain::people_service::MailLinks { public_url: public_url.to_owned() });
        }
        let sealer = match policies.secret {
            Some(secret) => Sealer::new(&secret),
            None => Sealer::ephemeral(&keyward_domain::OsRandom),
        };
        let meter = Arc::new(keyward_domain::meter::UsageMeter::new(policies.usage_buffer));
        let anonymous_refusals = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let instruments = telemetry::Instruments::register(
            policies.telemetry.unwrap_or_else(keyward_telemetry::Telemetry::local),
            &meter,
            &anonymous_refusals,
        );
        Self {
            service,
            people,
            cookies: CookieSettings::for_public_url(public_url),
            limits,
            api_limits: policies.api,
            sealer,
            meter,
            hasher,
            anonymous_refusals,
            instruments,
            github_keys: policies.github_keys,
            draining: Arc::default(),
        }
    }
}

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Base of `documentation_url` in error envelopes, e.g. `https://keys.example.com`.
    pub public_url: String,
    pub trusted_proxies: TrustedProxies,
    /// What a scraper presents to `GET /metrics`; `None`: the route does not exist.
    pub metrics_token: Option<metrics::MetricsToken>,
}

/// One method of a resource and its handler.
fn on<F, Args>(method: Method, handler: F) -> (Method, Route)
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    (method.clone(), web::route().method(method).to(handler))
}

/// A resource whose other methods answer 405 with the envelope and an `Allow` header that
/// lists the methods it does accept (RFC 9110 §15.5.6), taken from the same list.
/// Every route it registers must be in the route table ([`routes::ROUTES`]); a test
/// calls every route of the table.
fn resource(path: &str, routes: Vec<(Method, Route)>) -> actix_web::Resource {
    resource_as(path, path, routes)
}

/// [`resource`] for a pattern the route table lists otherwise (`{path:.*}`, a regular
/// expression, as `{path}`).
fn resource_as(path: &str, listed: &str, routes: Vec<(Method, Route)>) -> actix_web::Resource {
    for (method, _) in &routes {
        assert!(routes::find(method, listed).is_some(), "{method} {listed} is missing from routes::ROUTES");
    }
    let allow = routes.iter().map(|(method, _)| method.as_str()).collect::<Vec<_>>().join(", ");
    routes
        .into_iter()
        .fold(web::resource(path), |r, (_, route)| r.route(route))
        .default_service(web::to(move || std::future::ready(h::method_not_allowed(&allow))))
}

/// One handler for each method a gateway asks with.
fn forward_auth_methods<F, Args>(handler: F) -> Vec<(Method, Route)>
where
    F: Handler<Args> + Clone,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    gateway::FORWARD_AUTH_METHODS
        .iter()
        .filter_map(|name| Method::from_bytes(name.as_bytes()).ok())
        .map(|method| on(method, handler.clone()))
        .collect()
}

/// The application, for `HttpServer::new` and for `actix_web::test::init_service`.
pub fn app<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    settings: HttpSettings,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    app_with(state, settings, |_| {})
}

/// [`app`] with more services beside the API (the binary's dashboard), registered before
/// the management scope, whose default service answers every path nobody else took. They
/// share the state, the cookie settings and the envelope, which leaves an HTML answer as
/// it is.
pub fn app_with<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    settings: HttpSettings,
    beside: impl FnOnce(&mut web::ServiceConfig),
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let cookies = web::Data::new(state.cookies.clone());
    let instruments = web::Data::new(state.instruments.clone());
    App::new()
        .app_data(state)
        .app_data(instruments)
        .app_data(cookies)
        .app_data(web::Data::new(PublicUrl(settings.public_url.trim_end_matches('/').to_owned())))
        .app_data(web::Data::new(settings.trusted_proxies))
        // The envelope sees every response.
        .wrap(from_fn(error::envelope))
        // The verification routes (the hot path) first, and outside the management scope:
        // every dynamic route tried before a request's own costs a regex match, and the
        // journal and CSRF middlewares have nothing to do for them (no audit event, no
        // idempotency; the CSRF check is the handler's `CsrfChecked` extractor).
        .service(resource("/v1/keys/verify", vec![on(Method::POST, h::verify_key::<S, L>)]))
        .service(resource("/v1/keys/self", vec![on(Method::GET, h::key_self::<S, L>)]))
        // Forward auth: verification for gateways, any method a client uses, no body read.
        .service(resource("/v1/forward-auth/{id}", forward_auth_methods(gateway::forward_auth::<S, L>)))
        .service(resource_as(
            "/v1/forward-auth/{id}/{path:.*}",
            "/v1/forward-auth/{id}/{path}",
            forward_auth_methods(gateway::forward_auth_path::<S, L>),
        ))
        // Leak response: anonymous or key-authenticated, never a management call; what a
        // report changes is audited by its use case (leaks.rs).
        .service(resource("/v1/keys/self/revoke", vec![on(Method::POST, leaks::self_revoke::<S, L>)]))
        .service(resource("/v1/leaks/github", vec![on(Method::POST, leaks::github_report::<S, L>)]))
        .service(
            // The default 64 KiB: 100 strings of 512 bytes fit.
            resource("/v1/leaks/revoke", vec![on(Method::POST, leaks::public_report::<S, L>)]),
        )
        // Only with a scrape token, and not a management call: a scrape leaves no audit event.
        .configure(|config| {
            if let Some(token) = settings.metrics_token {
                config
                    .app_data(web::Data::new(token))
                    .service(resource("/metrics", vec![on(Method::GET, metrics::metrics::<S, L>)]));
            }
        })
        .configure(beside)
        .service(management_routes::<S, L>())
}

/// Everything but verification, inside the unit of work of the journal.
fn management_routes<S: Store, L: Admission>() -> actix_web::Scope<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    web::scope("")
        // The last `wrap` is the outermost: the audit trail sees CSRF refusals.
        .wrap(from_fn(session::csrf_guard))
        .wrap(from_fn(journal::journal::<S, L>))
        .service(resource("/healthz", vec![on(Method::GET, h::healthz)]))
        .service(resource("/readyz", vec![on(Method::GET, h::readyz::<S, L>)]))
        .service(resource("/v1/openapi.json", vec![on(Method::GET, openapi::openapi_json)]))
        .service(resource("/v1", vec![on(Method::GET, openapi::describe)]))
        .service(resource("/docs/errors/{code}", vec![on(Method::GET, h::error_page)]))
        .service(resource("/v1/account", vec![on(Method::GET, h::get_account::<S, L>)]))
        .service(resource("/v1/auth/login", vec![on(Method::POST, p::login::<S, L>)]))
        .service(resource("/v1/auth/logout", vec![on(Method::POST, p::logout::<S, L>)]))
        .service(resource("/v1/auth/session", vec![on(Method::GET, p::session::<S, L>)]))
        .service(resource("/v1/account/verify-password", vec![on(Method::POST, p::verify_password::<S, L>)]))
        .service(resource("/v1/account/password", vec![on(Method::POST, consent::change_password::<S, L>)]))
        .service(resource("/v1/auth/invitations", vec![on(Method::GET, invitations::list_invitations::<S, L>)]))
        .service(resource("/v1/auth/password-reset", vec![on(Method::POST, password_reset::request_reset::<S, L>)]))
        .service(resource(
            "/v1/auth/password-reset/{token}",
            vec![on(Method::POST, password_reset::reset_password::<S, L>)],
        ))
        .service(resource(
            "/v1/invitations/{token}",
            vec![
                on(Method::GET, invitations::get_invitation::<S, L>),
                on(Method::DELETE, invitations::decline_invitation::<S, L>),
            ],
        ))
        .service(resource(
            "/v1/invitations/{token}/accept",
            vec![on(Method::POST, invitations::accept_invitation::<S, L>)],
        ))
        .service(resource(
            "/v1/account/users",
            vec![on(Method::GET, p::list_users::<S, L>), on(Method::POST, invitations::invite_user::<S, L>)],
        ))
        .service(resource(
            "/v1/account/users/{id}",
            vec![on(Method::PATCH, p::update_user::<S, L>), on(Method::DELETE, p::remove_user::<S, L>)],
        ))
        .service(resource("/v1/account/invitations", vec![on(Method::GET, invitations::list_sent_invitations::<S, L>)]))
        .service(resource(
            "/v1/account/invitations/{id}",
            vec![on(Method::DELETE, invitations::withdraw_invitation::<S, L>)],
        ))
        .service(resource(
            "/v1/account/keys",
            vec![on(Method::GET, p::list_account_keys::<S, L>), on(Method::POST, p::create_account_key::<S, L>)],
        ))
        .service(resource(
            "/v1/account/keys/{id}",
            vec![
                on(Method::GET, p::get_account_key::<S, L>),
                on(Method::PATCH, p::update_account_key::<S, L>),
                on(Method::DELETE, p::revoke_account_key::<S, L>),
            ],
        ))
        .service(resource("/v1/account/keys/{id}/rotate", vec![on(Method::POST, p::rotate_account_key::<S, L>)]))
        .service(resource(
            "/v1/webhooks",
            vec![on(Method::GET, webhooks::list_webhooks::<S, L>), on(Method::POST, webhooks::create_webhook::<S, L>)],
        ))
        .service(resource(
            "/v1/webhooks/{id}",
            vec![
                on(Method::GET, webhooks::get_webhook::<S, L>),
                on(Method::PATCH, webhooks::update_webhook::<S, L>),
                on(Method::DELETE, webhooks::delete_webhook::<S, L>),
            ],
        ))
        .service(resource(
            "/v1/webhooks/{id}/rotate-secret",
            vec![on(Method::POST, webhooks::rotate_webhook_secret::<S, L>)],
        ))
        .service(resource("/v1/webhooks/{id}/attempts", vec![on(Method::GET, webhooks::list_webhook_attempts::<S, L>)]))
        .service(resource(
            "/v1/webhooks/{id}/messages/{message_id}/retry",
            vec![on(Method::POST, webhooks::retry_webhook_message::<S, L>)],
        ))
        .service(resource(
            "/v1/keyspaces",
            vec![on(Method::GET, h::list_keyspaces::<S, L>), on(Method::POST, h::create_keyspace::<S, L>)],
        ))
        .service(resource(
            "/v1/keyspaces/{id}",
            vec![
                on(Method::GET, h::get_keyspace::<S, L>),
                on(Method::PATCH, h::update_keyspace::<S, L>),
                on(Method::DELETE, h::delete_keyspace::<S, L>),
            ],
        ))
        .service(resource(
            "/v1/keyspaces/{id}/routes",
            vec![on(Method::GET, gateway::get_routes::<S, L>), on(Method::PUT, gateway::put_routes::<S, L>)],
        ))
        .service(resource(
            "/v1/keys",
            vec![on(Method::GET, h::list_keys::<S, L>), on(Method::POST, h::create_key::<S, L>)],
        ))
        // Fixed paths before `/v1/keys/{id}`, which would otherwise swallow them.
        .service(
            resource("/v1/keys/import", vec![on(Method::POST, h::import_keys::<S, L>)])
                .app_data(BodyLimit(IMPORT_BODY_LIMIT)),
        )
        .service(resource(
            "/v1/keys/{id}",
            vec![
                on(Method::GET, h::get_key::<S, L>),
                on(Method::PATCH, h::update_key::<S, L>),
                on(Method::DELETE, h::revoke_key::<S, L>),
            ],
        ))
        .service(resource("/v1/keys/{id}/rotate", vec![on(Method::POST, h::rotate_key::<S, L>)]))
        .service(resource("/v1/keys/{id}/usage", vec![on(Method::GET, h::key_usage::<S, L>)]))
        .service(resource("/v1/stats", vec![on(Method::GET, h::stats::<S, L>)]))
        .service(resource("/v1/audit", vec![on(Method::GET, h::list_audit::<S, L>)]))
        .default_service(web::to(openapi::no_route))
}
