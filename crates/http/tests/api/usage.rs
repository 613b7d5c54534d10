//! Usage metering over HTTP: verifications are recorded in memory, written in a batch, and
//! read back per key, per day and per account.

use serde_json::json;
use time::Duration;

use crate::helpers::*;

both_stores! {
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
        assert_eq!(app.meter.flush(app.service.store()).await, 6, "the unknown key is not attributed");

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
        assert_eq!(stats.body["verifications_total"], 6);
        assert_eq!(stats.body["by_code"], json!({"VALID": 5, "INSUFFICIENT_SCOPE": 1}));
        assert_eq!(stats.body["active_keys"], 1);
        app.get("/v1/keys/key_0000000000000000000000/usage").await.assert_error(404, "not_found");

        // Used keys are no longer idle.
        let (_, idle) = app.create_key(json!({"name": "idle", "idle_timeout_seconds": 60})).await;
        app.clock.advance(Duration::seconds(50));
        assert_eq!(app.verify(json!({"key": idle})).await["code"], "VALID");
        app.meter.flush(app.service.store()).await;
        app.clock.advance(Duration::seconds(50));
        assert_eq!(app.verify(json!({"key": idle})).await["code"], "VALID", "its last use was 50 s ago");
    }
}
