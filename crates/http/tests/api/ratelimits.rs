//! Rate limits and quotas over HTTP: RATE_LIMITED and QUOTA_EXHAUSTED in verification, the
//! management API's limits, and the headers of every limited response.

use actix_web::test::TestRequest;
use serde_json::json;
use time::Duration;

use crate::helpers::*;

both_stores! {
    async fn custom_windows_then_quota_in_spec_order(app) {
        let (_, key) = app.create_key(json!({
            "name": "metered", "scopes": ["reports:read"],
            "rate_limits": [{"name": "minute", "limit": 3, "period_seconds": 60}, {"name": "hour", "limit": 100, "period_seconds": 3600}],
            "quota": {"remaining": 10, "refill": {"amount": 10, "interval": "day"}},
        })).await;
        // A request refused earlier in the order consumes neither the limit nor the quota.
        let denied = app.verify(json!({"key": key, "scopes": ["reports:write"], "cost": 3})).await;
        assert_eq!(denied["code"], "INSUFFICIENT_SCOPE");
        assert_eq!(denied["ratelimit"], serde_json::Value::Null);

        let spend = |cost: u32| json!({"key": key, "cost": cost});
        let first = app.verify(spend(3)).await;
        assert_eq!((first["code"].as_str(), first["quota_remaining"].as_i64()), (Some("VALID"), Some(7)));
        assert_eq!(first["ratelimit"], json!({"limit": 3, "remaining": 2, "reset_seconds": 60}));
        assert_eq!(app.verify(spend(3)).await["quota_remaining"], 4);
        assert_eq!(app.verify(spend(3)).await["quota_remaining"], 1);
        // The minute window is full: rate limited, and the quota is untouched.
        let limited = app.verify(spend(3)).await;
        assert_eq!(limited["code"], "RATE_LIMITED");
        assert_eq!(limited["valid"], false);
        assert_eq!(limited["ratelimit"]["remaining"], 0);
        app.clock.advance(Duration::seconds(60));
        // A quota of 10 at cost 3 admits three calls: the fourth is exhausted.
        let exhausted = app.verify(spend(3)).await;
        assert_eq!(exhausted["code"], "QUOTA_EXHAUSTED");
        assert_eq!(exhausted["quota_remaining"], 1);
        assert_eq!(app.verify(spend(1)).await["code"], "VALID", "a cheaper call still fits");
        // The daily refill at 00:00 UTC replaces the balance.
        app.clock.set(time::macros::datetime!(2026-03-02 00:00:00 UTC));
        let refilled = app.verify(spend(3)).await;
        assert_eq!((refilled["code"].as_str(), refilled["quota_remaining"].as_i64()), (Some("VALID"), Some(7)));
        // Cost bounds are validated.
        app.post("/v1/keys/verify", json!({"key": key, "cost": 2_000_000})).await.assert_error(400, "validation_failed");
    }

    async fn tiers_limit_per_minute(app) {
        let (_, key) = app.create_key(json!({"name": "free tier", "tier": "free"})).await;
        let codes: Vec<String> = {
            let mut codes = Vec::new();
            for _ in 0..11 {
                codes.push(app.verify(json!({"key": key})).await["code"].as_str().unwrap().to_owned());
            }
            codes
        };
        assert_eq!(codes.iter().filter(|c| *c == "VALID").count(), 10);
        assert_eq!(codes[10], "RATE_LIMITED");
    }

    async fn management_responses_carry_rate_limit_headers(app) {
        let reply = app.get("/v1/keys").await;
        for header in ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "ratelimit-policy", "ratelimit"] {
            assert!(reply.headers.get(header).is_some(), "{header} missing");
        }
        // The tightest limit met: the per-IP bucket (100), one used.
        assert_eq!(reply.headers.get("x-ratelimit-limit").unwrap(), "100");
        assert_eq!(reply.headers.get("x-ratelimit-remaining").unwrap(), "99");
        assert_eq!(reply.headers.get("ratelimit-policy").unwrap(), "\"ip\";q=100;w=10");
        let reset: i64 = reply.headers.get("x-ratelimit-reset").unwrap().to_str().unwrap().parse().unwrap();
        assert!(reset >= START.unix_timestamp(), "a Unix timestamp");
        // Errors carry them too.
        let missing = app.get("/v1/keys/key_0000000000000000000000").await;
        assert!(missing.headers.get("ratelimit").is_some());
    }

    async fn endpoint_sub_limits_answer_429_with_retry_after(app) {
        let (id, _) = app.create_key(json!({"name": "rotated often"})).await;
        let mut current = id;
        for _ in 0..10 {
            let rotated = app.post(&format!("/v1/keys/{current}/rotate"), json!({})).await;
            assert_eq!(rotated.status.as_u16(), 201, "{:#}", rotated.body);
            current = rotated.str("id");
            app.clock.advance(Duration::seconds(1));
        }
        let refused = app.post(&format!("/v1/keys/{current}/rotate"), json!({})).await;
        refused.assert_error(429, "rate_limited");
        assert_eq!(refused.body["tier"], "endpoint");
        let retry: u64 = refused.headers.get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
        assert_eq!(refused.body["retry_after_seconds"], retry);
        assert_eq!(retry, 3600 - 10, "until the hour's window ends");
        assert_eq!(refused.headers.get("x-ratelimit-remaining").unwrap(), "0");
        // Other endpoints are not affected.
        assert_eq!(app.get("/v1/keys").await.status.as_u16(), 200);
    }

    // Changing a webhook's URL points this server's requests somewhere new, as creating
    // one does: the same hourly budget (issue #29).
    async fn a_webhook_is_changed_under_the_budget_it_is_created_under(app) {
        let made = app.post("/v1/webhooks", json!({"url": "https://hooks.example.com/0"})).await;
        assert_eq!(made.status.as_u16(), 201, "{:#}", made.body);
        let path = format!("/v1/webhooks/{}", made.str("id"));
        for n in 1..30 {
            let changed = app.patch(&path, json!({"url": format!("https://hooks.example.com/{n}")})).await;
            assert_eq!(changed.status.as_u16(), 200, "{:#}", changed.body);
            app.clock.advance(Duration::seconds(1));
        }
        assert_eq!(app.patch(&path, json!({"url": "https://hooks.example.com/30"})).await.status.as_u16(), 200);
        let refused = app.patch(&path, json!({"url": "https://hooks.example.com/31"})).await;
        refused.assert_error(429, "rate_limited");
        assert_eq!(refused.body["tier"], "endpoint");
        // Nothing changed by the refused call.
        assert_eq!(app.get(&path).await.body["url"], "https://hooks.example.com/30");
    }

    async fn the_ip_bucket_refuses_a_burst(app) {
        let mut statuses = Vec::new();
        for _ in 0..101 {
            statuses.push(app.send(TestRequest::get().uri("/v1/account")).await.status.as_u16());
        }
        assert!(statuses[..100].iter().all(|s| *s == 401), "unauthenticated requests meet the IP limit too");
        let refused = app.send(TestRequest::get().uri("/v1/account")).await;
        refused.assert_error(429, "rate_limited");
        assert_eq!(refused.body["tier"], "ip");
        // A tenth of a second refills one token.
        app.clock.advance(Duration::milliseconds(100));
        assert_eq!(app.get("/v1/account").await.status.as_u16(), 200);
    }
}
