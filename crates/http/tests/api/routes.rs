//! The route table and the application agree: every route `routes::ROUTES` lists is served
//! (the other direction — no route registered that the table lacks — is checked each time
//! the application is built).

use actix_web::{http::Method, test::TestRequest};
use keyward_http::routes::ROUTES;
use keyward_store_mem::MemStore;

use crate::helpers::TestApp;

#[actix_web::test]
async fn every_route_of_the_table_is_served() {
    let app = TestApp::new(MemStore::new()).await;
    for route in ROUTES {
        let path = route.path.replace("{id}", "key_x").replace("{account_id}", "acct_x").replace("{code}", "not_found");
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

#[test]
fn each_method_and_path_is_listed_once() {
    for (i, route) in ROUTES.iter().enumerate() {
        let twice = ROUTES[i + 1..].iter().any(|other| other.method == route.method && other.path == route.path);
        assert!(!twice, "{} {} is listed twice", route.method, route.path);
    }
}
