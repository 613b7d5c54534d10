//! The OpenAPI 3.1 document, generated from the handlers' annotations and the DTO types.
//! `cargo xtask codegen` writes it to `docs/openapi.json`; `--check` fails when it drifts.

use utoipa::{
    Modify, OpenApi,
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
};

use crate::{consent::*, dto::*, handlers::*, metrics::*, people::*};

// Serves the document: the handler lives with what it serves, so the document can list
// every handler without the handlers depending back on it (no import cycle).
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations", responses((status = 200, description = "This document")))]
pub async fn openapi_json() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok().json(document())
}

struct ApiKeyAuth;

impl Modify for ApiKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "metrics_token",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The scrape token of the `metrics_token` setting: `Authorization: Bearer <token>`.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::builder().scheme(HttpAuthScheme::Bearer).description(Some(
                "An account key: `Authorization: Bearer <key>`, `X-API-Key: <key>`, or `Authorization: Basic base64(<account_id>:<key>)`.",
            )).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Keyward", description = "Issue, verify, rate-limit, rotate and revoke API keys."),
    paths(
        healthz, readyz, openapi_json, error_page, get_account,
        create_keyspace, list_keyspaces, get_keyspace, update_keyspace, delete_keyspace,
        create_key, import_keys, list_keys, get_key, update_key, revoke_key, rotate_key, key_self, verify_key,
        login, logout, session, verify_password, change_password, list_invitations, accept_invitation, decline_invitation,
        list_users, add_user, update_user, remove_user,
        create_account_key, list_account_keys, get_account_key, update_account_key, revoke_account_key, rotate_account_key,
        list_audit, key_usage, stats, metrics,
    ),
    components(schemas(ErrorEnvelope, FieldErrorDto)),
    modifiers(&ApiKeyAuth),
    tags(
        (name = "keys", description = "Service keys: issue, list, update, rotate, revoke, import."),
        (name = "verification", description = "The hot path: is this key valid for this request?"),
        (name = "keyspaces", description = "Groups of service keys with their own prefix and defaults."),
        (name = "account", description = "The calling account."),
        (name = "auth", description = "Login sessions (cookie) and the step-up window."),
        (name = "users", description = "People in the account and their roles."),
        (name = "account keys", description = "Management keys for automation; created from a session after step-up."),
        (name = "audit", description = "The append-only, hash-chained audit trail."),
        (name = "usage", description = "Metered verifications: per-key records and account statistics."),
        (name = "operations", description = "Health, readiness and documentation."),
    )
)]
struct ApiDoc;

/// The document served at `/v1/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    // The version of this build, not of the utoipa crate that rendered it.
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// The document as committed in `docs/openapi.json`.
pub fn document_json() -> String {
    let mut json = document().to_pretty_json().unwrap_or_default();
    json.push('\n');
    json
}
