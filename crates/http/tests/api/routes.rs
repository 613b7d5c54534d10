//! The route table and the application agree: every route `routes::ROUTES` lists is served
//! (the other direction — no route registered that the table lacks — is checked each time
//! the application is built).

use actix_web::{http::Method, test::TestRequest};
use keyward_http::routes::ROUTES;
use keyward_store_mem::MemStore;

use serde_json::json;

use crate::helpers::TestApp;

#[actix_web::test]
async fn every_route_of_the_table_is_served() {
    let app = TestApp::new(MemStore::new()).await;
    for route in ROUTES {
        let path = route
            .path
            .replace("{id}", "key_x")
            .replace("{account_id}", "acct_x")
            .replace("{token}", "0000000000000000000000000000000000000000000")
            .replace("{code}", "not_found")
            .replace("{path}", "v1/anything");
        let method = Method::from_bytes(route.method.as_bytes()).unwrap();
        let mut request = TestRequest::default().method(method.clone()).uri(&path);
        if method == Method::POST || method == Method::PATCH {
            request = request.insert_header(("content-type", "application/json")).set_payload("{}");
        }
        // Anonymous: every route answers — 200, 401, 400 — but none is unknown to the router.
        let reply = app.send(request).await;
        let wrong_method = reply.body["error"] == "method_not_allowed";
        let no_route =
            reply.status == 404 && reply.body["message"].as_str().is_some_and(|m| m.contains("no such route"));
        assert!(!wrong_method && !no_route, "{} {}: {} {:#}", route.method, route.path, reply.status, reply.body);
    }
}

/// The table's `credentials` is what the routes do: an account key is refused with 403
/// `session_required` by exactly the session-only routes, and the document declares each
/// route's forms from the table.
#[actix_web::test]
async fn the_credentials_of_the_table_are_what_the_routes_take() {
    use keyward_http::routes::Credentials;
    let app = TestApp::new(MemStore::new()).await;
    let doc = serde_json::to_value(keyward_http::openapi::document()).unwrap();
    let mut wrong = Vec::new();
    // Well-formed ids and bodies, so that a route reaches its credential rule rather than
    // stopping at a malformed input.
    let body = |method: &str, path: &str| -> serde_json::Value {
        match (method, path) {
            ("POST", "/v1/account/verify-password") => json!({"password": "not it"}),
            ("POST", "/v1/account/password") => json!({"current_password": "x", "new_password": "a long new password"}),
            ("POST", "/v1/account/users") => json!({"email": "grace@example.com", "role": "member"}),
            ("PATCH", "/v1/account/users/{id}") => json!({"role": "member"}),
            ("POST", "/v1/account/keys") => json!({"name": "x", "scopes": ["keys:read"]}),
            ("POST", "/v1/keys") | ("POST", "/v1/keyspaces") => json!({"name": "x"}),
            ("PATCH", _) => json!({"name": "y"}),
            _ => json!({}),
        }
    };
    for route in ROUTES {
        let id = if route.path.starts_with("/v1/account/users") {
            "usr_0000000000000000000000"
        } else if route.path.starts_with("/v1/account/invitations") {
            "inv_0000000000000000000000"
        } else {
            "key_0000000000000000000000"
        };
        let path = route
            .path
            .replace("{id}", id)
            .replace("{user_id}", "usr_0000000000000000000000")
            .replace("{account_id}", &app.account_id)
            .replace("{token}", "0000000000000000000000000000000000000000000")
            .replace("{code}", "not_found")
            .replace("{path}", "v1/anything");
        let method = Method::from_bytes(route.method.as_bytes()).unwrap();
        // A key revoking itself would leave the rest of the table without a credential.
        let key = if route.path == "/v1/keys/self/revoke" {
            app.create_key(json!({"name": "revokes itself"})).await.1
        } else {
            app.root_key.clone()
        };
        let mut request = TestRequest::default()
            .method(method.clone())
            .uri(&path)
            .insert_header(("authorization", format!("Bearer {key}")));
        if method == Method::POST || method == Method::PATCH {
            request = request.set_json(body(route.method, route.path));
        }
        let reply = app.send(request).await;
        let refused = reply.status == 403 && reply.body["error"] == "session_required";
        if refused != (route.credentials == Credentials::Session) {
            wrong.push(format!(
                "{} {}: {:?}, but a key got {} {}",
                route.method, route.path, route.credentials, reply.status, reply.body["error"]
            ));
        }
        let declared: Vec<String> = doc["paths"][route.path][route.method.to_lowercase()]["security"]
            .as_array()
            .map(|forms| forms.iter().flat_map(|f| f.as_object().unwrap().keys().cloned()).collect())
            .unwrap_or_default();
        let expected: &[&str] = match route.credentials {
            Credentials::None if route.path == "/metrics" => &["metrics_token"],
            Credentials::None => &[],
            Credentials::Key => &["api_key", "x_api_key", "basic"],
            Credentials::KeyOrSession => &["api_key", "x_api_key", "basic", "session"],
            Credentials::Session => &["session"],
        };
        assert_eq!(declared, expected, "{} {}: declared security", route.method, route.path);
    }
    assert!(wrong.is_empty(), "the table says otherwise:\n{}", wrong.join("\n"));
}

#[test]
fn each_method_and_path_is_listed_once() {
    for (i, route) in ROUTES.iter().enumerate() {
        let twice = ROUTES[i + 1..].iter().any(|other| other.method == route.method && other.path == route.path);
        assert!(!twice, "{} {} is listed twice", route.method, route.path);
    }
}

#[test]
fn the_openapi_document_and_the_route_table_list_the_same_operations() {
    let doc = serde_json::to_value(keyward_http::openapi::document()).unwrap();
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    for route in ROUTES {
        let listed = documented.iter().any(|(m, p)| m == route.method && p == route.path);
        assert!(listed, "{} {} is served but not in the OpenAPI document", route.method, route.path);
    }
    for (method, path) in &documented {
        let served = ROUTES.iter().any(|r| r.method == method && r.path == path);
        assert!(served, "{method} {path} is documented but not in the route table");
    }
}

#[actix_web::test]
async fn the_api_describes_itself() {
    let app = TestApp::new(MemStore::new()).await;
    let catalog = app.send(TestRequest::get().uri("/v1")).await;
    assert_eq!(catalog.status, 200);
    let modules = catalog.body["modules"].as_array().unwrap();
    let keys = modules.iter().find(|m| m["name"] == "keys").expect("a keys module");
    let create = keys["functions"].as_array().unwrap().iter().find(|f| f["name"] == "create_key").unwrap();
    assert_eq!(create["method"], "POST");
    assert_eq!(create["path"], "/v1/keys");
    assert_eq!(create["required"], serde_json::json!(["name"]));
    assert!(create["optional"].as_array().unwrap().iter().any(|a| a == "scopes"), "{create:#}");
    // Every operation of the document is a function of some module.
    let functions: usize = modules.iter().map(|m| m["functions"].as_array().unwrap().len()).sum();
    assert_eq!(functions, ROUTES.len());

    // An unknown route names the modules.
    let unknown = app.get("/v1/nowhere").await;
    unknown.assert_error(404, "not_found");
    let details = unknown.body["details"].as_array().unwrap();
    assert_eq!(details.len(), modules.len());
    assert!(details.iter().any(|d| d["field"] == "keys"), "{:#}", unknown.body);
}

#[test]
fn path_parameters_are_the_paths_and_the_rest_are_optional_queries() {
    let doc = serde_json::to_value(keyward_http::openapi::document()).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let in_template: Vec<&str> =
            path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
        for (method, operation) in item.as_object().unwrap() {
            let parameters = operation["parameters"].as_array().cloned().unwrap_or_default();
            let in_path: Vec<&str> =
                parameters.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).collect();
            assert_eq!(in_path, in_template, "{method} {path}: path parameters");
            for parameter in parameters.iter().filter(|p| p["in"] != "path") {
                assert_eq!(parameter["in"], "query", "{method} {path}: {parameter}");
                assert_eq!(parameter["required"], false, "{method} {path}: {parameter}");
            }
        }
    }
}

#[test]
fn every_reference_of_the_document_resolves() {
    fn references<'a>(value: &'a serde_json::Value, found: &mut Vec<&'a str>) {
        match value {
            serde_json::Value::Object(map) => {
                found.extend(map.get("$ref").and_then(|r| r.as_str()));
                map.values().for_each(|v| references(v, found));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| references(v, found)),
            _ => {}
        }
    }
    let doc = serde_json::to_value(keyward_http::openapi::document()).unwrap();
    let mut found = Vec::new();
    references(&doc, &mut found);
    assert!(!found.is_empty());
    let unresolved: Vec<_> = found
        .into_iter()
        .filter(|r| {
            r.strip_prefix("#/components/schemas/").is_none_or(|name| doc["components"]["schemas"].get(name).is_none())
        })
        .collect();
    assert!(unresolved.is_empty(), "references to nothing: {unresolved:?}");
}

#[test]
fn every_operation_declares_the_errors_every_route_can_answer() {
    let doc = serde_json::to_value(keyward_http::openapi::document()).unwrap();
    let public = ["/healthz", "/readyz", "/v1/openapi.json", "/v1", "/docs/errors/{code}"];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let declared = |status: &str| operation["responses"].get(status).is_some();
            for status in ["429", "500", "503"] {
                assert!(declared(status), "{method} {path} lacks {status}");
            }
            if !public.contains(&path.as_str()) {
                assert!(declared("401") && declared("403"), "{method} {path} lacks 401 or 403");
            }
            if path.contains('{') {
                assert!(declared("404"), "{method} {path} lacks 404");
            }
            if method == "post" || method == "patch" {
                for status in ["400", "408", "413", "415"] {
                    assert!(declared(status), "{method} {path} lacks {status}");
                }
            }
            let envelope = &operation["responses"]["503"]["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(envelope, "#/components/schemas/ErrorEnvelope", "{method} {path}");
        }
    }
}

#[actix_web::test]
async fn without_a_scrape_token_neither_the_document_nor_the_catalog_offers_metrics() {
    let app = TestApp::without_metrics(MemStore::new()).await;
    let doc = app.send(TestRequest::get().uri("/v1/openapi.json")).await.body;
    assert!(doc["paths"].get("/metrics").is_none());
    assert!(doc["paths"].get("/v1/keys").is_some());
    let catalog = app.send(TestRequest::get().uri("/v1")).await.body;
    let offered = catalog["modules"].as_array().unwrap().iter().flat_map(|m| m["functions"].as_array().unwrap().iter());
    assert!(offered.clone().all(|f| f["path"] != "/metrics"));
    assert_eq!(offered.count(), ROUTES.len() - 1);
    let with = TestApp::new(MemStore::new()).await;
    assert!(with.send(TestRequest::get().uri("/v1/openapi.json")).await.body["paths"].get("/metrics").is_some());
}

/// Issue #29 item 5: a function's listing names every argument its body accepts — a body
/// that may be left out (`oneOf: [null, …]`: the rotations, webhook secret rotation,
/// accepting an invitation) included.
#[actix_web::test]
async fn the_catalog_names_every_argument_a_body_accepts() {
    let app = TestApp::new(MemStore::new()).await;
    let doc = serde_json::to_value(keyward_http::openapi::document()).unwrap();
    let catalog = app.send(TestRequest::get().uri("/v1")).await.body;
    let functions: Vec<&serde_json::Value> =
        catalog["modules"].as_array().unwrap().iter().flat_map(|m| m["functions"].as_array().unwrap()).collect();
    let resolve = |schema: &serde_json::Value| -> serde_json::Value {
        match schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
            Some(name) => doc["components"]["schemas"][name].clone(),
            None => schema.clone(),
        }
    };
    let mut checked = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let body = &operation["requestBody"]["content"]["application/json"]["schema"];
            let choices = body["oneOf"].as_array().cloned().unwrap_or_else(|| vec![body.clone()]);
            let mut accepted: Vec<String> = choices
                .iter()
                .map(resolve)
                .flat_map(|s| {
                    s["properties"].as_object().map(|p| p.keys().cloned().collect::<Vec<_>>()).unwrap_or_default()
                })
                .collect();
            if accepted.is_empty() {
                continue;
            }
            accepted.sort();
            let function = functions
                .iter()
                .find(|f| f["path"] == path.as_str() && f["method"] == method.to_uppercase())
                .unwrap_or_else(|| panic!("{method} {path} is not in the catalog"));
            let mut listed: Vec<String> = ["required", "optional"]
                .iter()
                .flat_map(|k| function[*k].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()))
                .filter(|a| accepted.contains(a))
                .collect();
            listed.sort();
            assert_eq!(listed, accepted, "{method} {path}: the catalog's arguments");
            checked.push(format!("{method} {path}"));
        }
    }
    for must in
        ["post /v1/keys/{id}/rotate", "post /v1/account/keys/{id}/rotate", "post /v1/webhooks/{id}/rotate-secret"]
    {
        assert!(checked.iter().any(|c| c == must), "{must} was not checked: {checked:?}");
    }
}
