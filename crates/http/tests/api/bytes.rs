//! Bytes PostgreSQL refuses (issue #29): a text value holding U+0000 cannot reach a query,
//! so every string an API route takes — path and query parameters, and the string fields
//! of each documented request body — is walked from the OpenAPI document and sent with a
//! NUL in it. Each answer is a 4xx with the envelope, never a 500 and never a database
//! error in the log; a query or body value is refused as `validation_failed`, naming it.

use actix_web::http::Method;
use keyward_domain::people::Role;
use serde_json::{Value, json};

use crate::helpers::*;

const NUL: &str = "a\u{0}b";

/// How a request is sent: with the account's key, or with an owner's stepped-up session.
#[derive(Clone, Copy, Debug)]
enum As {
    Key,
    Session,
}

/// One probe: the route, where the NUL went, and the request.
struct Probe {
    method: Method,
    in_query: bool,
    route: String,
    place: String,
    path: String,
    body: Option<Value>,
}

fn percent(value: &str) -> String {
    value.replace('\u{0}', "%00")
}

/// A path of `route` with every parameter filled (`nul_in`, if any, with the NUL).
fn path_of(route: &str, nul_in: Option<&str>) -> String {
    let mut path = String::new();
    for segment in route.split('/').filter(|s| !s.is_empty()) {
        path.push('/');
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) if Some(name) == nul_in => path.push_str(&percent(NUL)),
            // A well-formed value, so that the parameter under test is the one refused.
            Some("id") if route.starts_with("/v1/keyspaces") => path.push_str("ks_0000000000000000000000"),
            Some("id") if route.starts_with("/v1/webhooks") => path.push_str("wh_0000000000000000000000"),
            Some("id") if route.contains("invitations") => path.push_str("inv_0000000000000000000000"),
            Some("id") if route.starts_with("/v1/account/users") => path.push_str("usr_0000000000000000000000"),
            Some(_) => path.push_str("key_0000000000000000000000"),
            None => path.push_str(segment),
        }
    }
    path
}

fn string_typed(schema: &Value, document: &Value) -> bool {
    let schema = resolve(schema, document);
    schema["type"] == "string"
        || schema["type"].as_array().is_some_and(|t| t.contains(&json!("string")))
        || schema["oneOf"].as_array().is_some_and(|s| s.iter().any(|s| string_typed(s, document)))
}

fn resolve<'a>(schema: &'a Value, document: &'a Value) -> &'a Value {
    match schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
        Some(name) => &document["components"]["schemas"][name],
        None => schema,
    }
}

/// Every probe the document describes.
fn probes(document: &Value) -> Vec<Probe> {
    let mut probes = Vec::new();
    for (route, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else { continue };
            let example = operation["requestBody"]["content"]["application/json"]["example"].clone();
            let body = (!example.is_null()).then_some(example.clone());
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                if !string_typed(&parameter["schema"], document) {
                    continue;
                }
                let name = parameter["name"].as_str().unwrap();
                let path = match parameter["in"].as_str() {
                    Some("path") => path_of(route, Some(name)),
                    Some("query") => format!("{}?{name}={}", path_of(route, None), percent(NUL)),
                    _ => continue,
                };
                probes.push(Probe {
                    method: method.clone(),
                    in_query: parameter["in"] == "query",
                    route: route.clone(),
                    place: name.to_owned(),
                    path,
                    body: body.clone(),
                });
            }
            // Each string field of the documented example, one at a time.
            if let Some(fields) = example.as_object() {
                for (field, value) in fields {
                    if !value.is_string() {
                        continue;
                    }
                    let mut body = example.clone();
                    body[field] = json!(NUL);
                    probes.push(Probe {
                        method: method.clone(),
                        in_query: false,
                        route: route.clone(),
                        place: field.clone(),
                        path: path_of(route, None),
                        body: Some(body),
                    });
                }
            }
        }
    }
    probes
}

both_stores! {
    async fn a_nul_in_any_string_the_api_takes_is_refused_at_the_edge(app) {
        let document = serde_json::to_value(keyward_http::openapi::document()).unwrap();
        app.add_person("owner.nul@acme.test", Role::Owner).await;
        let session = app.login_as("owner.nul@acme.test").await;
        app.step_up(&session).await;
        let probes = probes(&document);
        assert!(probes.len() > 40, "the walk found only {} strings", probes.len());
        let mut wrong = Vec::new();
        for probe in &probes {
            let mut answers = Vec::new();
            for who in [As::Key, As::Session] {
                // Past any rate limit the walk would meet.
                app.clock.advance(time::Duration::seconds(30));
                let reply = match who {
                    As::Key => app.call(probe.method.clone(), &probe.path, &app.root_key, probe.body.clone()).await,
                    As::Session => app.with_session(probe.method.clone(), &probe.path, &session, probe.body.clone()).await,
                };
                answers.push((who, reply));
            }
            for (who, reply) in &answers {
                let status = reply.status.as_u16();
                // Verification answers every string with a verdict, by design: a NUL is no
                // key (the checksum is checked before any lookup).
                if probe.route == "/v1/keys/verify" && status == 200 && reply.body["valid"] == false {
                    continue;
                }
                let code = reply.body["error"].as_str().unwrap_or_default();
                let envelope = reply.body["request_id"].is_string() && !code.is_empty();
                // A query parameter is refused by name, unless the caller is refused first.
                let named = reply.body["details"][0]["field"] == probe.place.as_str();
                let unnamed = probe.in_query && ![401, 403].contains(&status) && !(status == 400 && named);
                if !(400..500).contains(&status) || !envelope || unnamed {
                    let body: String = reply.body.to_string().chars().take(200).collect();
                    wrong.push(format!("{} {} ({:?}, NUL in {}): {status} {body}", probe.method, probe.route, who, probe.place));
                }
            }
        }
        assert!(wrong.is_empty(), "{} strings with a NUL were not refused at the edge:\n{}", wrong.len(), wrong.join("\n"));
    }
}
