use std::sync::Arc;

use actix_web::{
    body::MessageBody,
    dev::{Service, ServiceResponse},
    http::{Method, StatusCode},
    test, web,
};
use keyward_domain::{
    ManualClock, Plan, SeededRandom, Store,
    key_service::{DomainConfig, KeyService},
    password::HashParams,
    people_service::PeopleService,
};
use keyward_http::{AppState, HttpSettings, Policies, TrustedProxies};
use keyward_runtime::password::BlockingPasswordHasher;
use serde_json::Value;
use time::macros::datetime;

pub const START: time::OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

/// Runs a test body against both stores: `$name::memory` and `$name::postgres`.
macro_rules! both_stores {
    ($(async fn $name:ident($app:ident) $body:block)+) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                async fn run<S: keyward_domain::Store>($app: crate::helpers::TestApp<S>) $body

                #[actix_web::test]
                async fn memory() {
                    run(crate::helpers::TestApp::new(keyward_store_mem::MemStore::new()).await).await;
                }

                #[actix_web::test]
                async fn postgres() {
                    let db = keyward_store_pg::testing::TestDatabase::new().await;
                    run(crate::helpers::TestApp::new(db.store()).await).await;
                    drop(db);
                }
            }
        )+
    };
}
pub(crate) use both_stores;

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: actix_web::http::header::HeaderMap,
    pub body: Value,
    /// The body exactly as sent.
    pub bytes: actix_web::web::Bytes,
}

impl Reply {
    /// Asserts the SPEC §5 error envelope with this status and code.
    pub fn assert_error(&self, status: u16, code: &str) -> &Self {
        assert_eq!(self.status.as_u16(), status, "{:#}", self.body);
        assert_eq!(self.body["error"], code, "{:#}", self.body);
        assert!(self.body["message"].as_str().is_some_and(|m| !m.is_empty()));
        let request_id = self.body["request_id"].as_str().expect("request_id");
        assert!(request_id.starts_with("req_"));
        assert_eq!(self.headers.get("x-request-id").unwrap().to_str().unwrap(), request_id);
        assert_eq!(self.body["documentation_url"], format!("http://keyward.test/docs/errors/{code}"));
        self
    }

    pub fn str(&self, field: &str) -> String {
        self.body[field].as_str().unwrap_or_else(|| panic!("{field} in {:#}", self.body)).to_owned()
    }
}

pub struct TestApp<S: Store> {
    pub service: KeyService<S>,
    pub people: PeopleService<S, BlockingPasswordHasher, keyward_ratelimit::Limits>,
    pub meter: Arc<keyward_runtime::usage::UsageMeter>,
    pub clock: Arc<ManualClock>,
    /// The bootstrap account key, with every management scope.
    pub root_key: String,
    pub account_id: String,
    app: Box<
        dyn Service<
                actix_http::Request,
                Response = ServiceResponse<actix_web::body::BoxBody>,
                Error = actix_web::Error,
                Future = AppFuture,
            >,
    >,
}

impl<S: Store> TestApp<S> {
    pub async fn new(store: S) -> Self {
        Self::with_plan(store, Plan::Enterprise).await
    }

    pub async fn with_plan(store: S, plan: Plan) -> Self {
        Self::build(store, plan, Some(METRICS_TOKEN), Policies::default()).await
    }

    /// An app on the Pro plan with these HTTP-layer policies (limits).
    pub async fn with_policies(store: S, policies: Policies) -> Self {
        Self::build(store, Plan::Pro, Some(METRICS_TOKEN), policies).await
    }

    /// An app whose `GET /metrics` is off (no scrape token configured).
    pub async fn without_metrics(store: S) -> Self {
        Self::build(store, Plan::Enterprise, None, Policies::default()).await
    }

    /// An app that believes `X-Forwarded-For` and `X-Real-IP` from peers in `proxies`.
    pub async fn behind_proxy(store: S, proxies: &str) -> Self {
        let trusted = TrustedProxies(vec![proxies.parse().unwrap()]);
        Self::build_with(store, Plan::Enterprise, Some(METRICS_TOKEN), Policies::default(), trusted).await
    }

    async fn build(store: S, plan: Plan, metrics_token: Option<&str>, policies: Policies) -> Self {
        Self::build_with(store, plan, metrics_token, policies, TrustedProxies::default()).await
    }

    async fn build_with(
        store: S,
        plan: Plan,
        metrics_token: Option<&str>,
        policies: Policies,
        trusted_proxies: TrustedProxies,
    ) -> Self {
        let clock = Arc::new(ManualClock::new(START));
        let service = KeyService::new(
            store,
            clock.clone(),
            Arc::new(SeededRandom::new(plan as u64 + 1)),
            Arc::new(DomainConfig::default()),
        )
        .with_resolver(Arc::new(keyward_resolver::SystemResolver::new(Default::default())));
        let (account, issued) = service.create_account("Acme", plan, true).await.unwrap();
        let root_key = issued.unwrap().plaintext.expose_secret().to_owned();
        let settings = HttpSettings {
            public_url: "http://keyward.test/".into(),
            trusted_proxies,
            metrics_token: metrics_token.map(keyward_http::metrics::MetricsToken::new),
        };
        let audit = Arc::new(keyward_http::audit::RequestAuditSink);
        let hasher = BlockingPasswordHasher::new(HashParams::default(), 2).unwrap();
        let limits = Arc::new(keyward_ratelimit::Limits::in_process());
        let state = AppState::new(service.clone(), hasher, audit.clone(), limits, policies, &settings.public_url);
        let people = state.people.clone();
        let meter = state.meter.clone();
        let state = web::Data::new(state);
        let app = test::init_service(keyward_http::app(state, settings)).await;
        let app = BoxedApp(app);
        Self { service, people, meter, clock, root_key, account_id: account.id.to_string(), app: Box::new(app) }
    }

    /// A second account in the same store, with its own root key.
    pub async fn other_account_key(&self) -> String {
        let (_, issued) = self.service.create_account("Other", Plan::Enterprise, true).await.unwrap();
        issued.unwrap().plaintext.expose_secret().to_owned()
    }

    pub async fn send(&self, request: test::TestRequest) -> Reply {
        self.send_from(request, "192.0.2.10:5000").await
    }

    /// Sends from another client address (`ip:port`, `[v6]:port`).
    pub async fn send_from(&self, request: test::TestRequest, peer: &str) -> Reply {
        let response = self.app.call(request.peer_addr(peer.parse().unwrap()).to_request()).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = test::read_body(response).await;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Reply { status, headers, body, bytes }
    }

    pub async fn call(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> Reply {
        let mut request = test::TestRequest::default()
            .method(method)
            .uri(path)
            .insert_header(("authorization", format!("Bearer {key}")));
        if let Some(body) = body {
            request = request.set_json(body);
        }
        self.send(request).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, &self.root_key.clone(), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, &self.root_key.clone(), Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, &self.root_key.clone(), Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, &self.root_key.clone(), None).await
    }

    /// Creates a service key; returns (id, plaintext).
    pub async fn create_key(&self, body: Value) -> (String, String) {
        let reply = self.post("/v1/keys", body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:#}", reply.body);
        (reply.str("id"), reply.str("key"))
    }

    pub async fn verify(&self, body: Value) -> Value {
        let reply = self.post("/v1/keys/verify", body).await;
        assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
        reply.body
    }
}

type AppFuture =
    futures_util::future::LocalBoxFuture<'static, Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error>>;

/// Erases the app's body type so `TestApp` has one nameable type.
struct BoxedApp<T>(T);

impl<T, B> Service<actix_http::Request> for BoxedApp<T>
where
    T: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    T::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<actix_web::body::BoxBody>;
    type Error = actix_web::Error;
    type Future = AppFuture;

    fn poll_ready(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&self, req: actix_http::Request) -> Self::Future {
        let fut = self.0.call(req);
        Box::pin(async move { fut.await.map(ServiceResponse::map_into_boxed_body) })
    }
}

pub const PASSWORD: &str = "correct horse battery staple";

/// What the test app's `GET /metrics` asks of a scraper.
pub const METRICS_TOKEN: &str = "scrape-token-for-tests";

impl<S: Store> TestApp<S> {
    /// Adds a person to this app's account with `PASSWORD`.
    pub async fn add_person(&self, email: &str, role: keyward_domain::people::Role) {
        let email = keyward_domain::people::Email::new(email).unwrap();
        let password = keyward_domain::password::Password::new(PASSWORD.into()).unwrap();
        self.people.add_member(self.account_id.parse().unwrap(), email, role, Some(password)).await.unwrap();
    }

    /// Logs in; returns the session cookie's value and the response body.
    pub async fn login(&self, body: Value) -> (Option<String>, Reply) {
        let reply = self.send(test::TestRequest::post().uri("/v1/auth/login").set_json(body)).await;
        let cookie = reply.headers.get_all("set-cookie").filter_map(|v| v.to_str().ok()).find_map(|c| {
            c.strip_prefix("keyward_session=").map(|rest| rest.split(';').next().unwrap_or_default().to_owned())
        });
        (cookie, reply)
    }

    pub async fn login_as(&self, email: &str) -> String {
        let (cookie, reply) = self.login(serde_json::json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(reply.status.as_u16(), 200, "{:#}", reply.body);
        cookie.expect("a session cookie")
    }

    /// A request carrying the session cookie, as curl with a cookie jar sends it (JSON, no Origin).
    /// Steps the session up (password re-entered).
    pub async fn step_up(&self, session: &str) {
        let reply = self
            .with_session(
                Method::POST,
                "/v1/account/verify-password",
                session,
                Some(serde_json::json!({"password": PASSWORD})),
            )
            .await;
        assert_eq!(reply.status.as_u16(), 200, "{:#}", reply.body);
    }

    pub async fn with_session(&self, method: Method, path: &str, session: &str, body: Option<Value>) -> Reply {
        let mut request = test::TestRequest::default()
            .method(method)
            .uri(path)
            .cookie(actix_web::cookie::Cookie::new("keyward_session", session.to_owned()));
        request = match body {
            Some(body) => request.set_json(body),
            None => request.insert_header(("content-type", "application/json")),
        };
        self.send(request).await
    }
}

impl<S: Store> TestApp<S> {
    /// Every audit event in the store, all chains, as (action, result).
    pub async fn audit_actions(&self) -> Vec<(String, keyward_domain::audit::AuditResult)> {
        let store = self.service.store();
        let mut all = Vec::new();
        for chain in store.audit_chains().await.unwrap() {
            for record in store.audit_chain(chain, 0, 100_000).await.unwrap() {
                all.push((record.event.action.to_string(), record.event.result));
            }
        }
        all
    }

    /// The events of this app's account, in chain order.
    pub async fn account_trail(&self) -> Vec<keyward_domain::audit::AuditRecord> {
        self.service.store().audit_chain(Some(self.account_id.parse().unwrap()), 0, 100_000).await.unwrap()
    }
}
