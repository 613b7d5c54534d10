//! The audit trail over HTTP: one event per management call, none for verification, and
//! `GET /v1/audit` with filters and a cursor that is stable under concurrent inserts.

use actix_web::{http::Method, test::TestRequest};
use keyward_domain::audit::AuditResult;
use serde_json::json;
use time::Duration;

use crate::helpers::*;

both_stores! {
    async fn every_management_call_leaves_exactly_one_event(app) {
        let before = app.account_trail().await.len();
        let (id, key) = app.create_key(json!({"name": "audited"})).await;
        app.get("/v1/keys").await;
        app.get(&format!("/v1/keys/{id}")).await;
        app.get("/v1/keys/key_0000000000000000000000").await.assert_error(404, "not_found");
        app.post("/v1/keys", json!({"name": ""})).await.assert_error(400, "validation_failed");
        // Verification is the hot path: no audit event.
        app.verify(json!({"key": key})).await;
        app.call(Method::GET, "/v1/keys/self", &key, None).await;
        app.delete(&format!("/v1/keys/{id}")).await;

        let trail = app.account_trail().await;
        let new: Vec<(String, AuditResult, Option<String>)> = trail[before..]
            .iter()
            .map(|r| (r.event.action.to_string(), r.event.result, r.event.resource_id.clone()))
            .collect();
        assert_eq!(new, vec![
            ("key.create".to_owned(), AuditResult::Success, Some(id.clone())),
            ("key.list".to_owned(), AuditResult::Success, None),
            ("key.read".to_owned(), AuditResult::Success, Some(id.clone())),
            ("key.read".to_owned(), AuditResult::Failure, Some("key_0000000000000000000000".to_owned())),
            ("key.create".to_owned(), AuditResult::Failure, None),
            ("key.revoke".to_owned(), AuditResult::Success, Some(id.clone())),
        ]);
        let event = &trail.last().unwrap().event;
        assert_eq!(event.actor.to_string(), app.service.store().find_by_hash(&keyward_domain::KeyHash::blake3(&app.root_key)).await.unwrap().unwrap().id.to_string());
        assert_eq!(event.context.ip, Some("192.0.2.10".parse().unwrap()));
        assert!(event.context.request_id.is_some());
        assert!(!trail.iter().any(|r| serde_json::Value::Object(r.event.metadata.clone()).to_string().contains(&key)), "no plaintext key in metadata");

        // A denial without a credential is counted, not audited (issue #13: anyone can send
        // those at will); a failed login still lands in the chain without an account.
        let orphans = app.service.store().audit_chain(None, 0, 100).await.unwrap().len();
        app.send(TestRequest::get().uri("/v1/keys")).await.assert_error(401, "unauthorized");
        assert_eq!(app.service.store().audit_chain(None, 0, 100).await.unwrap().len(), orphans);
        app.send(TestRequest::post().uri("/v1/auth/login").set_json(json!({"email": "nobody@acme.io", "password": "wrong password!"}))).await;
        let orphans = app.service.store().audit_chain(None, 0, 100).await.unwrap();
        assert_eq!(orphans.last().map(|r| (r.event.action.to_string(), r.event.result)), Some(("auth.login_failed".to_owned(), AuditResult::Failure)));
        let reports = app.service.verify_audit(None).await.unwrap();
        assert!(reports.iter().all(|r| r.broken_at.is_none()), "{reports:?}");
    }

    async fn the_audit_api_filters_and_pages(app) {
        for i in 0..3 {
            app.create_key(json!({"name": format!("k{i}")})).await;
        }
        let page = app.get("/v1/audit?limit=2&action=key.create").await;
        assert_eq!(page.status.as_u16(), 200, "{:#}", page.body);
        let data = page.body["data"].as_array().unwrap();
        assert_eq!(data.len(), 2);
        assert!(data.iter().all(|e| e["action"] == "key.create" && e["result"] == "success" && e["actor_type"] == "key"));
        assert_eq!(data[0]["hash"].as_str().unwrap().len(), 64);
        let cursor = page.str("next_cursor");
        let rest = app.get(&format!("/v1/audit?limit=2&action=key.create&cursor={cursor}")).await;
        assert_eq!(rest.body["data"].as_array().unwrap().len(), 1);
        assert!(data[1]["ts"].as_str() >= rest.body["data"][0]["ts"].as_str(), "newest first");
        assert_eq!(app.get("/v1/audit?result=failure").await.body["data"].as_array().unwrap().len(), 0);
        app.get("/v1/audit?limit=0").await.assert_error(400, "validation_failed");
        app.get("/v1/audit?since=yesterday").await.assert_error(400, "validation_failed");
        app.get("/v1/audit?cursor=nope").await.assert_error(400, "validation_failed");

        // Reading the trail takes audit:read.
        let reader = app.service.create_account("Readers", keyward_domain::Plan::Pro, true).await.unwrap().1.unwrap();
        let mut key = reader.key.clone();
        key.scopes = keyward_domain::ScopeSet::parse(&["keys:read"]).unwrap();
        app.service.store().update_key(&reader.key, &key).await.unwrap();
        app.call(Method::GET, "/v1/audit", reader.plaintext.expose_secret(), None).await.assert_error(403, "insufficient_scope");
    }

    async fn paging_is_stable_under_concurrent_inserts(app) {
        let account = Some(app.account_id.parse::<keyward_domain::AccountId>().unwrap());
        let store = app.service.store();
        let event = |i: i64| keyward_domain::audit::AuditEvent {
            id: keyward_domain::EventId::generate(START - Duration::hours(1) + Duration::milliseconds(i), &keyward_domain::OsRandom),
            ts: START - Duration::hours(1) + Duration::milliseconds(i),
            account_id: account,
            actor: keyward_domain::Actor::System,
            action: "key.read".into(),
            resource_type: "key".into(),
            resource_id: None,
            result: AuditResult::Success,
            context: Default::default(),
            metadata: Default::default(),
        };
        let mut existing = std::collections::HashSet::new();
        for i in 0..1_000 {
            existing.insert(store.append_audit(&event(i)).await.unwrap().event.id.to_string());
        }
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut inserted = 0;
        loop {
            // Others keep writing while we page (and each page writes an event of its own).
            for _ in 0..3 {
                app.clock.advance(Duration::milliseconds(1));
                store.append_audit(&event(10_000 + inserted)).await.unwrap();
                inserted += 1;
            }
            app.clock.advance(Duration::milliseconds(200));
            let path = match &cursor { Some(c) => format!("/v1/audit?limit=7&cursor={c}"), None => "/v1/audit?limit=7".into() };
            let page = app.get(&path).await;
            assert_eq!(page.status.as_u16(), 200, "{:#}", page.body);
            seen.extend(page.body["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()));
            match page.body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        let pre_existing: Vec<&String> = seen.iter().filter(|id| existing.contains(*id)).collect();
        assert_eq!(pre_existing.len(), 1_000, "every pre-existing event once");
        let unique: std::collections::HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "none repeated");
    }
}
