//! Usage metering over HTTP: verifications are recorded in memory, written in a batch, and
//! read back per key, per day and per account.

use serde_json::json;
use time::Duration;

use crate::helpers::*;

both_stores! {
    async fn usage_pages_lose_no_record_that_shares_a_timestamp(app) {
        let (id, key) = app.create_key(json!({"name": "bursty"})).await;
        // The clock does not move: all five records share one timestamp.
        for i in 0..5 {
            let body = json!({"key": key, "endpoint": format!("/e{i}")});
            assert_eq!(app.verify(body).await["code"], "VALID");
        }
        keyward_runtime::usage::flush(&app.meter, app.service.store()).await;
        let (mut endpoints, mut cursor, mut pages) = (Vec::new(), None::<String>, 0);
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/keys/{id}/usage?limit=2&cursor={c}"),
                None => format!("/v1/keys/{id}/usage?limit=2"),
            };
            let page = app.get(&path).await;
            assert_eq!(page.status.as_u16(), 200, "{:#}", page.body);
            endpoints.extend(page.body["data"].as_array().unwrap().iter().map(|r| r["endpoint"].as_str().unwrap().to_owned()));
            pages += 1;
            match page.body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        endpoints.sort();
        assert_eq!(endpoints, ["/e0", "/e1", "/e2", "/e3", "/e4"], "each record exactly once");
        assert_eq!(pages, 3);
        app.get(&format!("/v1/keys/{id}/usage?cursor=bm90IGEgY3Vyc29y")).await.assert_error(400, "validation_failed");
    }

    async fn verifications_are_metered_without_touching_storage(app) {
        let (id, key) = app.create_key(json!({"name": "metered", "scopes": ["servers:read"]})).await;
        for i in 0..5 {
            app.clock.advance(Duration::milliseconds(1));
            let body = json!({"key": key, "scopes": ["servers:read"], "endpoint": "/servers", "method": "GET", "ip": format!("203.0.113.{i}")});
            assert_eq!(app.verify(body).await["code"], "VALID");
        }
        app.clock.advance(Duration::milliseconds(1));
        assert_eq!(app.verify(json!({"key": key, "scopes": ["servers:write"]})).await["code"], "INSUFFICIENT_SCOPE");
        app.verify(json!({"key": "kw_live_unknown"})).await;

        // Nothing reached storage yet: verification writes nothing.
        assert_eq!(app.get(&format!("/v1/keys/{id}")).await.body["usage_count"], 0);
        // Six verifications, the unknown key's (the calling account's, under no key), and the
        // two management calls made with the root key (create, get).
        assert_eq!(keyward_runtime::usage::flush(&app.meter, app.service.store()).await, 9);

        let key_view = app.get(&format!("/v1/keys/{id}")).await;
        assert_eq!(key_view.body["usage_count"], 6);
        assert_eq!(key_view.body["usage"], json!({"requests_today": 6, "requests_this_month": 6}));
        assert!(key_view.body["last_used_at"].is_string());

        let usage = app.get(&format!("/v1/keys/{id}/usage?limit=4")).await;
        assert_eq!(usage.status.as_u16(), 200, "{:#}", usage.body);
        let data = usage.body["data"].as_array().unwrap();
        assert_eq!(data.len(), 4);
        assert_eq!(data[0]["outcome"], "INSUFFICIENT_SCOPE");
        assert_eq!(data[1]["endpoint"], "/servers");
        assert_eq!(data[1]["method"], "GET");
        let stats = app.get("/v1/stats").await;
        assert_eq!(stats.status.as_u16(), 200, "{:#}", stats.body);
        assert_eq!(stats.body["verifications_total"], 7, "a failed lookup counts for the caller's account");
        assert_eq!(stats.body["by_code"], json!({"VALID": 5, "INSUFFICIENT_SCOPE": 1, "NOT_FOUND": 1}));
        assert!((stats.body["success_rate"].as_f64().unwrap() - 5.0 / 7.0).abs() < 1e-9, "{:#}", stats.body);
        assert!(stats.body["avg_response_time_ms"].as_f64().is_some(), "verifications are timed: {:#}", stats.body);
        assert_eq!(stats.body["active_keys"], 1);
        app.get("/v1/keys/key_0000000000000000000000/usage").await.assert_error(404, "not_found");

        // Management calls made with an account key are metered too, with their status.
        let root_id = app.service.store().find_by_hash(&keyward_domain::KeyHash::blake3(&app.root_key)).await.unwrap().unwrap().id;
        app.get("/v1/keys/key_0000000000000000000000").await;
        keyward_runtime::usage::flush(&app.meter, app.service.store()).await;
        let calls = app.service.store().key_usage(app.account_id.parse().unwrap(), root_id, (None, None), None, 100).await.unwrap();
        let calls: Vec<_> = calls.into_iter().map(|e| e.record).collect();
        let missing = calls
            .iter()
            .find(|c| c.endpoint.as_deref() == Some("/v1/keys/{id}") && c.status_code == Some(404))
            .expect("the 404 call is metered under its route pattern, not its path");
        assert_eq!(missing.method.as_deref(), Some("GET"));
        assert!(calls.iter().any(|c| c.endpoint.as_deref() == Some("/v1/keys/{id}/usage") && c.status_code == Some(404)));
        let own = app.get(&format!("/v1/keys/{root_id}/usage")).await;
        assert_eq!(own.status.as_u16(), 200, "an account key's calls are readable: {:#}", own.body);
        assert!(own.body["data"].as_array().unwrap().iter().any(|r| r["endpoint"] == "/v1/keys/{id}" && r["status_code"] == 404));
        assert!(missing.outcome.is_none() && missing.response_time_us.is_some());
        assert_eq!(app.get("/v1/stats").await.body["verifications_total"], 7, "not counted as verifications");

        // A key checking itself (`GET /v1/keys/self`) is a verification.
        app.clock.advance(Duration::milliseconds(1));
        let own = app.call(actix_web::http::Method::GET, "/v1/keys/self", &key, None).await;
        assert_eq!(own.status.as_u16(), 200, "{:#}", own.body);
        keyward_runtime::usage::flush(&app.meter, app.service.store()).await;
        let stats = app.get("/v1/stats").await;
        assert_eq!(stats.body["verifications_total"], 8);
        assert_eq!(stats.body["by_code"]["VALID"], 6);
        let latest = &app.get(&format!("/v1/keys/{id}/usage?limit=1")).await.body["data"][0];
        assert_eq!((latest["endpoint"].as_str(), latest["outcome"].as_str()), (Some("/v1/keys/self"), Some("VALID")));

        // Used keys are no longer idle.
        let (_, idle) = app.create_key(json!({"name": "idle", "idle_timeout_seconds": 60})).await;
        app.clock.advance(Duration::seconds(50));
        assert_eq!(app.verify(json!({"key": idle})).await["code"], "VALID");
        keyward_runtime::usage::flush(&app.meter, app.service.store()).await;
        app.clock.advance(Duration::seconds(50));
        assert_eq!(app.verify(json!({"key": idle})).await["code"], "VALID", "its last use was 50 s ago");
    }
}

/// The value of one metric in a Prometheus text page.
fn metric(page: &str, name: &str) -> u64 {
    let line = page.lines().find(|l| l.split(' ').next() == Some(name)).unwrap_or_else(|| panic!("{name} missing"));
    line[name.len() + 1..].parse().unwrap()
}

#[actix_web::test]
async fn metrics_need_the_scrape_token_and_show_the_meter() {
    use actix_web::test::TestRequest;

    let app = TestApp::new(keyward_store_mem::MemStore::new()).await;
    let scrape = |token: Option<&str>| {
        let request = TestRequest::get().uri("/metrics");
        match token {
            Some(token) => request.insert_header(("Authorization", format!("Bearer {token}"))),
            None => request,
        }
    };
    app.send(scrape(None)).await.assert_error(401, "unauthorized");
    app.send(scrape(Some("scrape-token-for-test"))).await.assert_error(401, "unauthorized");
    // Process-wide counters: no account's key opens them.
    app.send(scrape(Some(&app.root_key))).await.assert_error(401, "unauthorized");

    // One management call made with the root key and three verifications are metered.
    let (_, key) = app.create_key(json!({"name": "scraped"})).await;
    for _ in 0..3 {
        assert_eq!(app.verify(json!({"key": key})).await["code"], "VALID");
    }
    let page = app.send(scrape(Some(METRICS_TOKEN))).await;
    assert_eq!(page.status.as_u16(), 200);
    assert!(page.headers.get("content-type").unwrap().to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = page.body.as_str().unwrap().to_owned();
    assert!(text.contains("# TYPE keyward_usage_records_dropped_total counter"), "{text}");
    assert_eq!(metric(&text, "keyward_usage_records_buffered"), 4, "{text}");
    assert_eq!(metric(&text, "keyward_usage_records_written_total"), 0);
    assert_eq!(metric(&text, "keyward_usage_records_dropped_total"), 0);
    assert_eq!(metric(&text, "keyward_usage_buffer_capacity"), 100_000);
    // Requests by route template (never the path), method and status; verifications by
    // outcome; the limiter's decisions.
    assert!(text.contains(r#"keyward_verifications_total{outcome="VALID"} 3"#), "{text}");
    assert!(text.contains(r#"keyward_limiter_decisions_total{decision="admitted"} 3"#), "{text}");
    assert!(
        text.contains(r#"http_server_request_duration_seconds_count{http_request_method="POST",http_response_status_code="200",http_route="/v1/keys/verify"} 3"#),
        "{text}"
    );
    assert!(text.contains(r#"http_route="/v1/keys""#), "{text}");
    assert_eq!(app.verify(json!({"key": "kw_live_not_a_key"})).await["code"], "NOT_FOUND");
    let text = app.send(scrape(Some(METRICS_TOKEN))).await.body.as_str().unwrap().to_owned();
    assert!(text.contains(r#"keyward_verifications_total{outcome="NOT_FOUND"} 1"#), "{text}");
    assert!(
        text.contains(r#"keyward_limiter_decisions_total{decision="admitted"} 3"#),
        "a key not found reached no limiter: {text}"
    );

    assert_eq!(keyward_runtime::usage::flush(&app.meter, app.service.store()).await, 5);
    let text = app.send(scrape(Some(METRICS_TOKEN))).await.body.as_str().unwrap().to_owned();
    assert_eq!(metric(&text, "keyward_usage_records_buffered"), 0, "a scrape is not metered");
    assert_eq!(metric(&text, "keyward_usage_records_written_total"), 5);
    assert_eq!(metric(&text, "keyward_usage_flush_failures_total"), 0);
    assert!(!text.contains(METRICS_TOKEN) && !text.contains(&key), "{text}");
}

#[actix_web::test]
async fn without_a_scrape_token_there_is_no_metrics_route() {
    let app = TestApp::without_metrics(keyward_store_mem::MemStore::new()).await;
    let request =
        actix_web::test::TestRequest::get().uri("/metrics").insert_header(("Authorization", "Bearer anything"));
    app.send(request).await.assert_error(404, "not_found");
    // Not even a 405 that would tell the route exists.
    app.send(actix_web::test::TestRequest::post().uri("/metrics")).await.assert_error(404, "not_found");
}
