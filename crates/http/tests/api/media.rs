//! Representations by `Accept` (issue #15): JSON by default, XML through the same handlers,
//! RFC 9457 problem details for errors, 406 for a type none serves — and a refused request
//! is not executed.

use actix_web::test::TestRequest;
use serde_json::json;

use crate::helpers::*;

fn with_accept(app_key: &str, method: actix_web::http::Method, path: &str, accept: &str) -> TestRequest {
    TestRequest::default()
        .method(method)
        .uri(path)
        .insert_header(("authorization", format!("Bearer {app_key}")))
        .insert_header(("accept", accept.to_owned()))
}

fn content_type(reply: &Reply) -> &str {
    reply.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default()
}

both_stores! {
    async fn xml_is_the_same_answer_in_another_syntax(app) {
        let (id, _) = app.create_key(json!({"name": "shown <as> xml", "metadata": {"plan tier": "gold"}})).await;
        let json = app.get(&format!("/v1/keys/{id}")).await;
        let xml = app.send(with_accept(&app.root_key, actix_web::http::Method::GET, &format!("/v1/keys/{id}"), "application/xml")).await;
        assert_eq!(xml.status.as_u16(), 200);
        assert_eq!(content_type(&xml), "application/xml; charset=utf-8");
        assert_eq!(xml.headers.get("vary").unwrap(), "accept");
        let text = std::str::from_utf8(&xml.bytes).unwrap();
        assert!(text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<response>"), "{text}");
        assert!(text.contains(&format!("<id>{id}</id>")), "{text}");
        assert!(text.contains("<name>shown &lt;as&gt; xml</name>"), "escaped: {text}");
        assert!(text.contains("<entry key=\"plan tier\">gold</entry>"), "a member that is no XML name: {text}");
        assert_eq!(json.body["name"], "shown <as> xml");

        // A creation answers in XML too, secret included (it is the show-once answer).
        let created = app.send(
            with_accept(&app.root_key, actix_web::http::Method::POST, "/v1/keys", "text/xml").set_json(json!({"name": "x"})),
        ).await;
        assert_eq!(created.status.as_u16(), 201);
        assert!(std::str::from_utf8(&created.bytes).unwrap().contains("<key>kw_live_"));

        // Errors too, in the envelope's shape.
        let missing = app.send(with_accept(&app.root_key, actix_web::http::Method::GET, "/v1/keys/key_0000000000000000000000", "application/xml")).await;
        assert_eq!(missing.status.as_u16(), 404);
        assert_eq!(content_type(&missing), "application/xml; charset=utf-8");
        let text = std::str::from_utf8(&missing.bytes).unwrap();
        assert!(text.contains("<error>not_found</error>") && text.contains("<request_id>req_"), "{text}");
    }

    async fn problem_details_when_asked_for_by_name(app) {
        let request = with_accept(&app.root_key, actix_web::http::Method::POST, "/v1/keys", "application/json, application/problem+json")
            .set_json(json!({"name": ""}));
        let reply = app.send(request).await;
        assert_eq!(reply.status.as_u16(), 400);
        assert_eq!(content_type(&reply), "application/problem+json");
        let body = &reply.body;
        assert_eq!(body["type"], "http://keyward.test/docs/errors/validation_failed");
        assert_eq!(body["title"], "The body or query parsed, but a field is missing, unknown or out of bounds.");
        assert_eq!(body["status"], 400);
        assert_eq!(body["detail"], body["message"]);
        assert_eq!(body["instance"], reply.headers.get("x-request-id").unwrap().to_str().unwrap());
        assert_eq!(body["error"], "validation_failed", "the envelope's code, as an extension member");
        assert_eq!(body["details"][0]["field"], "name");
        // A success is plain JSON, whoever asked.
        let ok = app.send(with_accept(&app.root_key, actix_web::http::Method::GET, "/v1/account", "application/problem+json")).await;
        assert_eq!((ok.status.as_u16(), content_type(&ok)), (200, "application/json"));
    }

    async fn a_type_none_serves_is_406_and_runs_nothing(app) {
        let before = app.get("/v1/keys").await.body["total"].clone();
        for accept in ["text/html", "image/png", "application/json;q=0"] {
            let request = with_accept(&app.root_key, actix_web::http::Method::POST, "/v1/keys", accept).set_json(json!({"name": "never"}));
            app.send(request).await.assert_error(406, "not_acceptable");
        }
        assert_eq!(app.get("/v1/keys").await.body["total"], before, "no key was made");
        // Off the API, pages are served as they are.
        let page = app.send(TestRequest::get().uri("/docs/errors/not_acceptable").insert_header(("accept", "text/html"))).await;
        assert_eq!(page.status.as_u16(), 200);
        // A browser's Accept still gets JSON from the API (it names */*).
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        let reply = app.send(with_accept(&app.root_key, actix_web::http::Method::GET, "/v1/account", browser)).await;
        assert_eq!((reply.status.as_u16(), content_type(&reply)), (200, "application/xml; charset=utf-8"), "xml (q=0.9) beats */* (q=0.8)");
    }

    async fn query_parameters_are_strict(app) {
        // A boolean, a fraction or a sign where an integer is expected, an unknown status or
        // environment, an unknown parameter: 400 naming what is wrong, never a page.
        for query in [
            "limit=true", "limit=1.5", "limit=-1", "limit=0x10", "limit=", "status=maybe",
            "environment=prod", "status=active&status=revoked", "colour=blue",
        ] {
            let reply = app.get(&format!("/v1/keys?{query}")).await;
            reply.assert_error(400, "validation_failed");
        }
        assert_eq!(app.get("/v1/keys?limit=10&status=active&environment=live").await.status.as_u16(), 200);
        app.get("/v1/audit?since=yesterday").await.assert_error(400, "validation_failed");
        app.get("/v1/audit?result=ok").await.assert_error(400, "validation_failed");
    }
}
