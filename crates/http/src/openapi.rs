//! The OpenAPI 3.1 document, generated from the handlers' annotations and the DTO types,
//! and the catalog `GET /v1` serves, derived from it: the API describes itself from one
//! set of declarations. `cargo xtask codegen` writes the document to `docs/openapi.json`;
//! `--check` fails when it drifts.

use std::sync::OnceLock;

use serde_json::{Map, Value, json};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme},
};

use crate::{
    consent::*,
    dto::*,
    error::{ApiError, ERROR_CODES, ErrorCode},
    gateway::*,
    handlers::*,
    invitations::*,
    leaks::*,
    metrics::*,
    password_reset::*,
    people::*,
    webhooks::*,
};

// Serves the document: the handler lives with what it serves, so the document can list
// every handler without the handlers depending back on it (no import cycle).
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations", responses((status = 200, description = "This document")))]
pub async fn openapi_json(req: actix_web::HttpRequest) -> actix_web::HttpResponse {
    let mut doc = document();
    if !serves_metrics(&req) {
        doc.paths.paths.remove("/metrics");
    }
    actix_web::HttpResponse::Ok().json(doc)
}

/// `/metrics` exists only when a scrape token is configured; the document and the catalog
/// this server answers with say so.
fn serves_metrics(req: &actix_web::HttpRequest) -> bool {
    req.app_data::<actix_web::web::Data<crate::metrics::MetricsToken>>().is_some()
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
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A key as `Authorization: Bearer <key>`."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "x_api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "A key as `X-API-Key: <key>`.",
            ))),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "A key as `Authorization: Basic base64(<account_id>:<key>)`: the user name binds the key \
                         to that account.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "keyward_session",
                "The session cookie of `POST /v1/auth/login` (`__Host-keyward_session` over HTTPS). Unsafe \
                 methods also need a same-origin `Origin` and a JSON body (CSRF).",
            ))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Keyward", description = "Issue, verify, rate-limit, rotate and revoke API keys.\n\n\
        Every answer under /v1 is JSON by default and XML for `Accept: application/xml` (or `text/xml`): the same \
        values, an object's members as elements, an array's items as `<item>`, null as `nil=\"true\"`, under a \
        `<response>` root. Errors are RFC 9457 problem details for `Accept: application/problem+json`. An Accept \
        naming none of these is 406 `not_acceptable`. This document itself is always JSON."),
    paths(
        healthz, readyz, openapi_json, describe, error_page, get_account,
        create_keyspace, list_keyspaces, get_keyspace, update_keyspace, delete_keyspace,
        create_key, import_keys, list_keys, get_key, update_key, revoke_key, rotate_key, key_self, verify_key,
        self_revoke, github_report, public_report,
        login, logout, session, verify_password, change_password, list_invitations,
        get_invitation, accept_invitation, decline_invitation, request_reset, reset_password,
        list_users, invite_user, update_user, remove_user, list_sent_invitations, withdraw_invitation,
        create_account_key, list_account_keys, get_account_key, update_account_key, revoke_account_key, rotate_account_key,
        list_audit, key_usage, stats, metrics,
        create_webhook, list_webhooks, get_webhook, update_webhook, delete_webhook, rotate_webhook_secret,
        list_webhook_attempts, retry_webhook_message,
        forward_auth, forward_auth_path, get_routes, put_routes,
    ),
    // Besides what the operations name themselves: the enums query parameters refer to.
    components(schemas(ErrorEnvelope, FieldErrorDto, schema::KeyStatusName, schema::AuditResultName)),
    modifiers(&ApiKeyAuth),
    tags(
        (name = "keys", description = "Service keys: issue, list, update, rotate, revoke, import."),
        (name = "verification", description = "The hot path: is this key valid for this request?"),
        (name = "leaks", description = "Leak response: secret-scanning reports and public reports of keys found in the wild."),
        (name = "keyspaces", description = "Groups of service keys with their own prefix and defaults."),
        (name = "gateways", description = "Forward auth for reverse proxies (nginx, Caddy, Traefik, Envoy) and the keyspaces' route rules (docs/gateways.md)."),
        (name = "account", description = "The calling account."),
        (name = "auth", description = "Login sessions (cookie) and the step-up window."),
        (name = "users", description = "People in the account, their roles, and the invitations it sent."),
        (name = "invitations", description = "What the holder of an invitation's link does with it: see it, accept it, decline it."),
        (name = "account keys", description = "Management keys for automation; created from a session after step-up."),
        (name = "audit", description = "The append-only, hash-chained audit trail."),
        (name = "usage", description = "Metered verifications: per-key records and account statistics."),
        (name = "webhooks", description = "Endpoints that hear of key events, signed per Standard Webhooks; their delivery attempts."),
        (name = "operations", description = "Health, readiness and documentation."),
    )
)]
struct ApiDoc;

/// The document served at `/v1/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    // The version of this build, not of the utoipa crate that rendered it.
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    declare_error_statuses(&mut doc);
    declare_security(&mut doc);
    name_each_method(&mut doc);
    doc
}

/// A path's operations by method, each possibly absent.
fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> [(&'static str, &mut Option<utoipa::openapi::path::Operation>); 7] {
    [
        ("GET", &mut item.get),
        ("POST", &mut item.post),
        ("PATCH", &mut item.patch),
        ("PUT", &mut item.put),
        ("DELETE", &mut item.delete),
        ("HEAD", &mut item.head),
        ("OPTIONS", &mut item.options),
    ]
}

/// An operation served for several methods (forward auth) gets an id per method
/// (`forward_auth_get`): OpenAPI wants each id once.
fn name_each_method(doc: &mut utoipa::openapi::OpenApi) {
    for item in doc.paths.paths.values_mut() {
        let operations = operations(item);
        let served = operations.iter().filter(|(_, o)| o.is_some()).count();
        let ids: Vec<Option<String>> =
            operations.iter().map(|(_, o)| o.as_ref().and_then(|o| o.operation_id.clone())).collect();
        let shared = served > 1 && ids.iter().flatten().all(|id| Some(id) == ids.iter().flatten().next());
        if !shared {
            continue;
        }
        for (method, operation) in operations {
            if let Some(operation) = operation {
                let method = method.to_lowercase();
                operation.operation_id = operation.operation_id.take().map(|id| format!("{id}_{method}"));
            }
        }
    }
}

/// Declares each operation's security from the route table's `credentials`
/// (`routes::Credentials`): a key in any of its three forms, the session cookie, or both.
/// Public routes, the login and the scrape endpoint keep what they declare.
fn declare_security(doc: &mut utoipa::openapi::OpenApi) {
    use crate::routes::{Credentials, ROUTES};
    use utoipa::openapi::security::SecurityRequirement;
    let forms = |names: &[&str]| -> Vec<SecurityRequirement> {
        names.iter().map(|name| SecurityRequirement::new(*name, Vec::<String>::new())).collect()
    };
    for route in ROUTES {
        let accepted = match route.credentials {
            Credentials::None => continue,
            Credentials::Key => forms(&["api_key", "x_api_key", "basic"]),
            Credentials::KeyOrSession => forms(&["api_key", "x_api_key", "basic", "session"]),
            Credentials::Session => forms(&["session"]),
        };
        let Some(item) = doc.paths.paths.get_mut(route.path) else { continue };
        let operation = match route.method {
            "GET" => &mut item.get,
            "POST" => &mut item.post,
            "PATCH" => &mut item.patch,
            "PUT" => &mut item.put,
            "DELETE" => &mut item.delete,
            _ => continue,
        };
        if let Some(operation) = operation.as_mut() {
            operation.security = Some(accepted);
        }
    }
}

/// Routes anyone may call: no credential, so no 401 or 403.
const PUBLIC: &[&str] = &["/healthz", "/readyz", "/v1/openapi.json", "/v1", "/docs/errors/{code}"];

/// Declares, on every operation, each error status the layers around its handler can
/// answer — the per-IP limit and storage on every route; credentials on all but the public
/// ones; a missing object where the path names one; a malformed, slow, oversized or
/// non-JSON body where there is one; the `Idempotency-Key` on POSTs; a malformed query —
/// each with the error envelope and the codes of that status (one table: `ErrorCode`).
/// A handler's own annotation wins where it already declares the status.
fn declare_error_statuses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder, path::ParameterIn};
    for (path, item) in doc.paths.paths.iter_mut() {
        let public = PUBLIC.contains(&path.as_str());
        for (method, operation) in operations(item) {
            let Some(operation) = operation.as_mut() else { continue };
            let mut statuses = vec![429, 500, 503];
            if !public {
                // 400: two different credentials (ambiguous_credentials).
                statuses.extend([400, 401, 403]);
            }
            if path.contains('{') {
                statuses.push(404);
            }
            if matches!(method, "POST" | "PATCH" | "PUT") {
                statuses.extend([400, 408, 413, 415]);
            }
            // A conflict with what exists (a name taken), and on POSTs the Idempotency-Key.
            if matches!(method, "POST" | "PATCH") && !public {
                statuses.push(409);
            }
            if method == "POST" && !public {
                statuses.push(422);
            }
            // Under /v1 an Accept naming nothing Keyward writes is refused before anything runs.
            if path.starts_with("/v1") {
                statuses.push(406);
            }
            let queried = operation.parameters.iter().flatten().any(|p| matches!(p.parameter_in, ParameterIn::Query));
            if queried {
                statuses.push(400);
            }
            for status in statuses {
                let codes: Vec<&str> =
                    ERROR_CODES.iter().filter(|(_, s, _)| *s == status).map(|(code, _, _)| *code).collect();
                let envelope = || ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorEnvelope"))).build();
                let response = ResponseBuilder::new()
                    .description(format!(
                        "The error envelope; `error` is one of: {}. With `Accept: application/problem+json`, \
                         RFC 9457 problem details (`type`, `title`, `status`, `detail`, `instance`) with the \
                         envelope's members as extensions.",
                        codes.join(", ")
                    ))
                    .content("application/json", envelope())
                    .content("application/problem+json", envelope())
                    .build();
                operation.responses.responses.entry(status.to_string()).or_insert_with(|| response.into());
            }
        }
    }
}

/// The document as committed in `docs/openapi.json`.
pub fn document_json() -> String {
    let mut json = document().to_pretty_json().unwrap_or_default();
    json.push('\n');
    json
}

// Lists every module (a tag of the document) and its functions (operations); served as is.
#[utoipa::path(get, path = "/v1", tag = "operations",
    responses((status = 200, description = "The modules of the API and their functions, with their required and optional arguments")))]
pub async fn describe(req: actix_web::HttpRequest) -> actix_web::HttpResponse {
    if serves_metrics(&req) {
        return actix_web::HttpResponse::Ok().json(catalog());
    }
    let mut catalog = catalog().clone();
    for module in catalog["modules"].as_array_mut().into_iter().flatten() {
        if let Some(functions) = module["functions"].as_array_mut() {
            functions.retain(|f| f["path"] != "/metrics");
        }
    }
    actix_web::HttpResponse::Ok().json(catalog)
}

/// `GET /v1`: `{"modules": [{"name", "description", "functions": [{"name", "method",
/// "path", "summary", "required", "optional"}]}]}`, built once from [`document`].
pub fn catalog() -> &'static Value {
    static CATALOG: OnceLock<Value> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let doc = serde_json::to_value(document()).unwrap_or_default();
        let mut modules: Vec<(String, String, Vec<Value>)> = doc["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|tag| (text(&tag["name"]), text(&tag["description"]), Vec::new()))
            .collect();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, operation) in item.as_object().into_iter().flatten() {
                let tag = operation["tags"][0].as_str().unwrap_or("operations");
                let Some(module) = modules.iter_mut().find(|(name, _, _)| name == tag) else { continue };
                let (required, optional) = arguments(&doc, operation);
                module.2.push(json!({
                    "name": operation["operationId"],
                    "method": method.to_uppercase(),
                    "path": path,
                    "summary": operation["summary"],
                    "required": required,
                    "optional": optional,
                }));
            }
        }
        let modules: Vec<Value> = modules
            .into_iter()
            .map(|(name, description, functions)| json!({"name": name, "description": description, "functions": functions}))
            .collect();
        json!({ "modules": modules })
    })
}

/// The names of the modules, for the 404 of an unknown route.
pub fn module_names() -> impl Iterator<Item = (&'static str, &'static str)> {
    catalog()["modules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| (m["name"].as_str().unwrap_or_default(), m["description"].as_str().unwrap_or_default()))
}

/// The answer to a path no route matches: 404, with the API's modules in `details`
/// (`GET /v1` lists their functions).
pub async fn no_route() -> Result<actix_web::HttpResponse, ApiError> {
    let modules = module_names()
        .map(|(name, description)| keyward_domain::FieldError {
            field: name.to_owned(),
            message: description.to_owned(),
        })
        .collect();
    Err(ApiError {
        details: modules,
        ..ApiError::new(ErrorCode::NotFound, "no such route; GET /v1 lists the API's modules")
    })
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// An operation's required and optional arguments: its path and query parameters, and the
/// properties of its JSON body (`$ref`s into the components resolved).
fn arguments(doc: &Value, operation: &Value) -> (Vec<String>, Vec<String>) {
    let (mut required, mut optional) = (Vec::new(), Vec::new());
    for parameter in operation["parameters"].as_array().into_iter().flatten() {
        let name = text(&parameter["name"]);
        if parameter["required"].as_bool() == Some(true) { required.push(name) } else { optional.push(name) }
    }
    let mut body = &operation["requestBody"]["content"]["application/json"]["schema"];
    // A body that may be left out is `oneOf: [null, the object]`: its arguments are the
    // object's, all optional (nothing required of a body one may not send).
    let nullable = body["oneOf"].as_array().filter(|choices| choices.iter().any(|c| c["type"] == "null"));
    if let Some(object) = nullable.and_then(|choices| choices.iter().find(|c| c["type"] != "null")) {
        body = object;
    }
    let schema = match body["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
        Some(name) => &doc["components"]["schemas"][name],
        None => body,
    };
    let must: Vec<&str> = schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let properties: &Map<String, Value> = match schema["properties"].as_object() {
        Some(properties) => properties,
        None => return (required, optional),
    };
    for name in properties.keys() {
        if must.contains(&name.as_str()) && nullable.is_none() {
            required.push(name.clone())
        } else {
            optional.push(name.clone())
        }
    }
    (required, optional)
}
