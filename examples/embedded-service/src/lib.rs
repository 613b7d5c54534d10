//! An example of embedding Keyward: a small "servers" API of a SaaS that verifies its
//! customers' keys in-process — no call to a Keyward server — against the PostgreSQL that
//! its Keyward servers use. Revocations made through Keyward reach it through the cache's
//! `LISTEN/NOTIFY` invalidation; its usage shows in Keyward's `GET /v1/keys/{id}/usage`.
//!
//! `src/main.rs` runs it; `tests/example.rs` drives it.

use std::sync::Arc;

use actix_web::{
    App, HttpResponse,
    body::MessageBody,
    dev::{ServiceFactory, ServiceRequest, ServiceResponse},
    middleware::from_fn,
    web,
};
use keyward_domain::embedded::Verifier;
use keyward_http::guard::{KeyGuard, VerifiedKey};
use keyward_ratelimit::Limits;
use keyward_store_pg::PgStore;

/// The service's routes: `GET /servers` needs a key granting `server:list`; `GET /health`
/// needs none.
pub fn app(
    verifier: Arc<Verifier<PgStore, Limits>>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        // Renders the guard's refusals as Keyward's error envelope.
        .wrap(from_fn(keyward_http::error::envelope))
        .route("/health", web::get().to(|| async { HttpResponse::Ok().body("ok") }))
        .service(
            web::scope("/servers")
                .wrap(KeyGuard::new(verifier).require_scopes(["server:list"]))
                .route("", web::get().to(list_servers)),
        )
}

/// The customer's servers: whoever the key belongs to (`owner_id`).
async fn list_servers(key: VerifiedKey) -> HttpResponse {
    let owner = key.owner_id().unwrap_or("unknown");
    HttpResponse::Ok().json(serde_json::json!({
        "owner_id": owner,
        "servers": [format!("srv_{owner}_1"), format!("srv_{owner}_2")],
    }))
}
