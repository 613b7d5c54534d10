//! Forward auth and route rules (issue #31): what a gateway's check answers for each kind of
//! key and route, the identity it hands the upstream, what it meters, and what an
//! anonymous client, another account or a forged header can do.

use actix_web::{http::Method, test::TestRequest};
use base64::Engine as _;
use keyward_store_mem::MemStore;
use serde_json::{Value, json};

use crate::helpers::{TestApp, both_stores};

/// A keyspace `api` (prefix `gw`) and its id.
async fn keyspace<S: keyward_domain::Store>(app: &TestApp<S>) -> String {
    let reply = app.post("/v1/keyspaces", json!({"name": "api", "prefix": "gw"})).await;
    assert_eq!(reply.status, 201, "{:#}", reply.body);
    reply.str("id")
}

fn servers_table() -> Value {
    json!({"default": "deny", "rules": [
        {"methods": ["GET", "HEAD"], "path": "/v1/servers/**", "scopes": ["servers:read"]},
        {"path": "/v1/public/**"},
    ]})
}

/// A gateway's check as Traefik and Caddy send it: the original method and URI in headers.
fn check(keyspace: &str, key: Option<&str>, method: &str, uri: &str) -> TestRequest {
    let mut request = TestRequest::get()
        .uri(&format!("/v1/forward-auth/{keyspace}"))
        .insert_header(("x-forwarded-method", method))
        .insert_header(("x-forwarded-uri", uri));
    if let Some(key) = key {
        request = request.insert_header(("authorization", format!("Bearer {key}")));
    }
    request
}

fn header<'a>(reply: &'a crate::helpers::Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).map(|v| v.to_str().unwrap())
}

both_stores! {
    async fn a_gateway_check_follows_the_keyspaces_route_rules(app) {
        let ks = keyspace(&app).await;
        let routes = format!("/v1/keyspaces/{ks}/routes");
        let fresh = app.get(&routes).await;
        assert_eq!(fresh.status, 200, "{:#}", fresh.body);
        assert_eq!((fresh.body["default"].clone(), fresh.body["rules"].clone()), (json!("any_key"), json!([])));
        assert_eq!(fresh.body["updated_at"], Value::Null);

        // A bad pattern is a 400 naming it, and changes nothing.
        let bad = json!({"rules": [{"path": "/v1/**/x"}, {"path": "/ok", "methods": ["G E T"]}]});
        let refused = app.call(Method::PUT, &routes, &app.root_key, Some(bad)).await;
        refused.assert_error(400, "validation_failed");
        let fields: Vec<&str> = refused.body["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
        assert_eq!(fields, ["rules[0].path", "rules[1].methods[0]"]);
        assert_eq!(app.get(&routes).await.body["rules"], json!([]));

        let put = app.call(Method::PUT, &routes, &app.root_key, Some(servers_table())).await;
        assert_eq!(put.status, 200, "{:#}", put.body);
        assert_eq!(put.body["rules"][1], json!({"methods": [], "path": "/v1/public/**", "scopes": []}));
        assert_eq!(app.get(&routes).await.body["rules"], put.body["rules"]);
        assert!(app.audit_actions().await.iter().any(|(action, _)| action == "keyspace.routes_update"));

        let (reader_id, reader) = app.create_key(json!({"name": "reader", "keyspace_id": ks, "scopes": ["servers:read"],
            "owner_id": "cust_42", "metadata": {"plan": "gold"}})).await;
        let (_, plain) = app.create_key(json!({"name": "plain", "keyspace_id": ks})).await;
        let (_, elsewhere) = app.create_key(json!({"name": "default keyspace", "scopes": ["servers:read"]})).await;

        // Allowed: the identity for the upstream, the limit's headers, nothing cached.
        let ok = app.send(check(&ks, Some(&reader), "GET", "/v1/servers/42?page=2")).await;
        assert_eq!(ok.status, 200, "{:#}", ok.body);
        assert_eq!(header(&ok, "x-keyward-code"), Some("VALID"));
        assert_eq!(header(&ok, "x-keyward-key-id"), Some(reader_id.as_str()));
        assert_eq!(header(&ok, "x-keyward-keyspace-id"), Some(ks.as_str()));
        assert_eq!(header(&ok, "x-keyward-owner-id"), Some("cust_42"));
        assert_eq!(header(&ok, "x-keyward-scopes"), Some("servers:read"));
        let meta = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header(&ok, "x-keyward-meta").unwrap()).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&meta).unwrap(), json!({"plan": "gold"}));
        assert!(header(&ok, "ratelimit").is_some() && header(&ok, "ratelimit-policy").is_some());
        assert_eq!(header(&ok, "cache-control"), Some("no-store"));

        // Refused, each with its status, envelope and code.
        let refusals = [
            (None, "GET", "/v1/servers/1", 401, "unauthorized", "NOT_FOUND"),
            (Some("kw_live_nonsense"), "GET", "/v1/servers/1", 401, "unauthorized", "NOT_FOUND"),
            (Some(elsewhere.as_str()), "GET", "/v1/servers/1", 401, "unauthorized", "NOT_FOUND"),
            (Some(app.root_key.as_str()), "GET", "/v1/servers/1", 401, "unauthorized", "NOT_FOUND"),
            (Some(plain.as_str()), "GET", "/v1/servers/1", 403, "insufficient_scope", "INSUFFICIENT_SCOPE"),
            (Some(reader.as_str()), "DELETE", "/v1/servers/1", 403, "route_not_allowed", "ROUTE_NOT_ALLOWED"),
            (Some(reader.as_str()), "GET", "/v2/anything", 403, "route_not_allowed", "ROUTE_NOT_ALLOWED"),
            // Another spelling of a path meets the same rule.
            (Some(plain.as_str()), "GET", "/v1/public/../servers/1", 403, "insufficient_scope", "INSUFFICIENT_SCOPE"),
            (Some(plain.as_str()), "GET", "//v1/%73ervers/1", 403, "insufficient_scope", "INSUFFICIENT_SCOPE"),
            (Some(reader.as_str()), "GET", "/v1/servers%2f1", 403, "route_not_allowed", "ROUTE_NOT_ALLOWED"),
        ];
        for (key, method, uri, status, error, code) in refusals {
            let reply = app.send(check(&ks, key, method, uri)).await;
            reply.assert_error(status, error);
            assert_eq!(header(&reply, "x-keyward-code"), Some(code), "{method} {uri}");
            assert_eq!(header(&reply, "www-authenticate").is_some(), status == 401, "{method} {uri}");
            assert!(header(&reply, "x-keyward-key-id").is_none());
        }
        let public = app.send(check(&ks, Some(&plain), "POST", "/v1/public/form")).await;
        assert_eq!(public.status, 200);

        // nginx's headers, and Envoy's path appended to the prefix.
        let nginx = TestRequest::get()
            .uri(&format!("/v1/forward-auth/{ks}"))
            .insert_header(("x-original-method", "GET"))
            .insert_header(("x-original-uri", "/v1/servers"))
            .insert_header(("x-api-key", reader.as_str()));
        assert_eq!(app.send(nginx).await.status, 200);
        let envoy = TestRequest::default()
            .method(Method::HEAD)
            .uri(&format!("/v1/forward-auth/{ks}/v1/servers/7?x=1"))
            .insert_header(("authorization", format!("Bearer {reader}")));
        assert_eq!(app.send(envoy).await.status, 200);
        let envoy_denied = TestRequest::default()
            .method(Method::POST)
            .uri(&format!("/v1/forward-auth/{ks}/v1/servers/7"))
            .insert_header(("authorization", format!("Bearer {reader}")));
        assert_eq!(app.send(envoy_denied).await.status, 403);

        // A client's own header of the other convention, passed on by the proxy, changes
        // nothing: disagreeing conventions are refused, and Envoy's path is its path.
        let smuggled = TestRequest::get()
            .uri(&format!("/v1/forward-auth/{ks}"))
            .insert_header(("x-original-method", "GET"))
            .insert_header(("x-original-uri", "/v1/servers/1"))
            .insert_header(("x-forwarded-uri", "/v1/public/x"))
            .insert_header(("x-api-key", plain.as_str()));
        let smuggled = app.send(smuggled).await;
        smuggled.assert_error(403, "route_not_allowed");
        let agreeing = check(&ks, Some(&plain), "GET", "/v1/public/x").insert_header(("x-original-uri", "/v1/public/x"));
        assert_eq!(app.send(agreeing).await.status, 200, "the same URI twice is one URI");
        let envoy_smuggled = TestRequest::post()
            .uri(&format!("/v1/forward-auth/{ks}/v1/servers/7"))
            .insert_header(("x-forwarded-method", "GET"))
            .insert_header(("x-forwarded-uri", "/v1/public/x"))
            .insert_header(("authorization", format!("Bearer {plain}")));
        assert_eq!(app.send(envoy_smuggled).await.status, 403, "Envoy's own path and method decide");

        // A browser's Accept, passed on by the gateway, still gets JSON, never 406.
        let html = check(&ks, None, "GET", "/v1/servers/1").insert_header(("accept", "text/html"));
        app.send(html).await.assert_error(401, "unauthorized");
        // An unknown or malformed keyspace is no keyspace.
        app.send(check("ks_0000000000000000000000", Some(&reader), "GET", "/v1/servers/1")).await.assert_error(404, "not_found");
        app.send(check("nonsense", Some(&reader), "GET", "/")).await.assert_error(404, "not_found");

        // Metered like a verification: the original method and path, never the query.
        app.meter.flush(app.service.store()).await;
        let usage = app.get(&format!("/v1/keys/{reader_id}/usage")).await;
        let endpoints: Vec<(&str, &str)> = usage.body["data"].as_array().unwrap().iter()
            .map(|r| (r["method"].as_str().unwrap(), r["endpoint"].as_str().unwrap())).collect();
        assert!(endpoints.contains(&("GET", "/v1/servers/42")), "{endpoints:?}");
        assert!(endpoints.iter().all(|(_, e)| !e.contains('?')), "{endpoints:?}");

        // A revocation is seen by the next check.
        app.delete(&format!("/v1/keys/{reader_id}")).await;
        let revoked = app.send(check(&ks, Some(&reader), "GET", "/v1/servers/1")).await;
        revoked.assert_error(401, "unauthorized");
        assert_eq!(header(&revoked, "x-keyward-code"), Some("REVOKED"));
    }

    async fn another_account_neither_reads_nor_writes_a_keyspaces_routes(app) {
        let ks = keyspace(&app).await;
        let routes = format!("/v1/keyspaces/{ks}/routes");
        let other = app.other_account_key().await;
        app.call(Method::GET, &routes, &other, None).await.assert_error(404, "not_found");
        app.call(Method::PUT, &routes, &other, Some(servers_table())).await.assert_error(404, "not_found");
        assert_eq!(app.get(&routes).await.body["default"], "any_key", "unchanged");
        // Anonymous: no route table, and the forward-auth check needs no account at all.
        let anonymous = app.send(TestRequest::get().uri(&routes)).await;
        anonymous.assert_error(401, "unauthorized");
        let anonymous_put = app.send(TestRequest::put().uri(&routes).set_json(servers_table())).await;
        anonymous_put.assert_error(401, "unauthorized");
        // A service key of the keyspace is no management key.
        let (_, service_key) = app.create_key(json!({"name": "svc", "keyspace_id": ks, "scopes": ["*"]})).await;
        let by_service_key = app.call(Method::PUT, &routes, &service_key, Some(servers_table())).await;
        assert!(matches!(by_service_key.status.as_u16(), 401 | 403), "{:#}", by_service_key.body);
        assert_eq!(app.get(&routes).await.body["default"], "any_key", "still unchanged");
    }
}

#[actix_web::test]
async fn the_key_may_come_from_the_query_only_when_the_keyspace_says_so() {
    let app = TestApp::new(MemStore::new()).await;
    let ks = keyspace(&app).await;
    let (_, key) = app.create_key(json!({"name": "k", "keyspace_id": ks})).await;
    let uri = format!("/v1/anything?api_key={key}");
    assert_eq!(app.send(check(&ks, None, "GET", &uri)).await.status, 401, "headers only by default");
    let table = json!({"query_parameter": "api_key"});
    let put = app.call(Method::PUT, &format!("/v1/keyspaces/{ks}/routes"), &app.root_key, Some(table)).await;
    assert_eq!(put.status, 200, "{:#}", put.body);
    assert_eq!(app.send(check(&ks, None, "GET", &uri)).await.status, 200);
    assert_eq!(app.send(check(&ks, None, "GET", "/v1/anything?other=1")).await.status, 401);
    // Metered without the query that carried the key.
    app.meter.flush(app.service.store()).await;
    let stats = app.get("/v1/stats").await;
    assert!(!stats.bytes.windows(key.len()).any(|w| w == key.as_bytes()));
}

#[actix_web::test]
async fn an_allowlist_believes_forwarded_addresses_only_from_trusted_proxies() {
    for trusted in [false, true] {
        let app = if trusted {
            TestApp::behind_proxy(MemStore::new(), "10.0.0.0/8").await
        } else {
            TestApp::new(MemStore::new()).await
        };
        let ks = keyspace(&app).await;
        let (_, key) =
            app.create_key(json!({"name": "office", "keyspace_id": ks, "ip_allowlist": ["203.0.113.9"]})).await;
        for forwarded in ["x-forwarded-for", "x-real-ip"] {
            let request = check(&ks, Some(&key), "GET", "/").insert_header((forwarded, "203.0.113.9"));
            let reply = app.send_from(request, "10.1.2.3:4000").await;
            if trusted {
                assert_eq!(reply.status, 200, "{forwarded} from a trusted proxy: {:#}", reply.body);
            } else {
                reply.assert_error(403, "ip_not_allowed");
            }
        }
        // The real client address passes whatever is forwarded.
        let direct = check(&ks, Some(&key), "GET", "/").insert_header(("x-forwarded-for", "198.51.100.1"));
        let from_client = app.send_from(direct, "203.0.113.9:4000").await;
        assert_eq!(from_client.status, 200, "{:#}", from_client.body);
    }
}

/// Found by schemathesis: Envoy's appended path with multi-byte characters and a C1 control
/// answered 500 (a slice inside a character); any path is now answered, never a panic.
#[actix_web::test]
async fn any_appended_path_is_answered() {
    let app = TestApp::new(MemStore::new()).await;
    let ks = keyspace(&app).await;
    let (_, key) = app.create_key(json!({"name": "k", "keyspace_id": ks})).await;
    for tail in
        ["%C3%84%F1%89%8F%93%C3%81%F1%93%8C%9E7%C2%96%C3%A3", "%C3%84%C3%84%C3%84%C3%84/x", "%F1%A7%B8%B6%C2%89"]
    {
        let request = TestRequest::delete()
            .uri(&format!("/v1/forward-auth/{ks}/{tail}"))
            .insert_header(("authorization", format!("Bearer {key}")));
        let reply = app.send(request).await;
        assert!(matches!(reply.status.as_u16(), 200 | 403), "{tail}: {} {:#}", reply.status, reply.body);
    }
}

#[actix_web::test]
async fn an_exhausted_limit_is_429_with_retry_after() {
    let app = TestApp::new(MemStore::new()).await;
    let ks = keyspace(&app).await;
    let (_, key) = app
        .create_key(json!({"name": "k", "keyspace_id": ks, "rate_limits": [{"name": "burst", "limit": 2, "period_seconds": 60}]}))
        .await;
    for _ in 0..2 {
        assert_eq!(app.send(check(&ks, Some(&key), "GET", "/")).await.status, 200);
    }
    let limited = app.send(check(&ks, Some(&key), "GET", "/")).await;
    limited.assert_error(429, "rate_limited");
    assert_eq!(header(&limited, "x-keyward-code"), Some("RATE_LIMITED"));
    let retry: u64 = header(&limited, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
}
