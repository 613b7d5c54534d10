//! The audit table refuses changes, in the database itself: for the application's role by
//! privilege and trigger, for everyone by trigger. A superuser who goes around the trigger
//! is caught by the hash chain.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use keyward_domain::{
    AccountId, EventId, SeededRandom,
    audit::{AuditEvent, AuditResult, RequestContext, first_broken_link},
    key::Actor,
    ports::AuditStore,
};
use keyward_store_pg::testing::{TestDatabase, with_database};
use time::{Duration, OffsetDateTime, macros::datetime};

fn event(account: AccountId, i: i64) -> AuditEvent {
    let ts = datetime!(2026-03-01 12:00 UTC) + Duration::seconds(i);
    AuditEvent {
        id: EventId::generate(ts, &SeededRandom::new(i as u64)),
        ts,
        account_id: Some(account),
        actor: Actor::System,
        action: "key.create".into(),
        resource_type: "key".into(),
        resource_id: Some(format!("key_{i}")),
        result: AuditResult::Success,
        context: RequestContext::default(),
        metadata: serde_json::Map::new(),
    }
}

async fn refused(conn: &mut AsyncPgConnection, sql: &str) -> String {
    conn.batch_execute(sql).await.expect_err(sql).to_string()
}

#[tokio::test]
async fn nobody_edits_history_and_tampering_is_detected() {
    let db = TestDatabase::new().await;
    let store = db.store();
    let account = AccountId::generate(OffsetDateTime::now_utc(), &SeededRandom::new(1));
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(store.append_audit(&event(account, i)).await.unwrap().event.id);
    }

    // The role that ran the migrations (here a superuser) meets the trigger.
    let mut owner = AsyncPgConnection::establish(db.url()).await.unwrap();
    assert!(refused(&mut owner, "UPDATE audit_events SET action = 'forged'").await.contains("append-only"));
    assert!(refused(&mut owner, "DELETE FROM audit_events").await.contains("append-only"));
    assert!(refused(&mut owner, "TRUNCATE audit_events").await.contains("append-only"));
    // It no longer owns the table, and the purge's switch opens nothing to it: only the
    // purge function, running as the trail's own owner, may delete.
    #[derive(diesel::QueryableByName)]
    struct Owner {
        #[diesel(sql_type = diesel::sql_types::Text)]
        tableowner: String,
    }
    let table: Owner = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query("SELECT tableowner::text AS tableowner FROM pg_tables WHERE tablename = 'audit_events'"),
        &mut owner,
    )
    .await
    .unwrap();
    assert_eq!(table.tableowner, "keyward_audit_owner");
    let switched = refused(&mut owner, "BEGIN; SET LOCAL keyward.audit_purge = 'on'; DELETE FROM audit_events;").await;
    assert!(switched.contains("append-only"), "{switched}");
    owner.batch_execute("ROLLBACK").await.unwrap();

    // An application role that may read and append meets the privileges first.
    let role = format!("keyward_app_{}", std::process::id());
    owner
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN; GRANT SELECT, INSERT ON audit_events TO {role};"
        ))
        .await
        .unwrap();
    let app_url = with_database(db.url(), db.name()).replacen("postgres@", &format!("{role}@"), 1);
    let mut app = AsyncPgConnection::establish(&app_url).await.unwrap();
    assert!(refused(&mut app, "UPDATE audit_events SET action = 'forged'").await.contains("permission denied"));
    assert!(refused(&mut app, "DELETE FROM audit_events").await.contains("permission denied"));
    assert!(refused(&mut app, "TRUNCATE audit_events").await.contains("permission denied"));
    drop(app);

    let chain = store.audit_chain(Some(account), 0, 100).await.unwrap();
    assert_eq!(first_broken_link(&chain, None), None);
    // A superuser who switches the trigger off can alter a row — and the chain names it.
    owner
        .batch_execute(&format!(
            "SET session_replication_role = replica; UPDATE audit_events SET resource_id = 'key_forged' WHERE id = '{}'; \
             SET session_replication_role = origin;",
            ids[3].as_uuid()
        ))
        .await
        .unwrap();
    let chain = store.audit_chain(Some(account), 0, 100).await.unwrap();
    assert_eq!(first_broken_link(&chain, None), Some(ids[3]));

    // The retention purge is the one way out.
    assert_eq!(store.purge_audit(Some(account), datetime!(2026-03-01 12:00:02 UTC)).await.unwrap(), 2);
    owner.batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role};")).await.unwrap();
}

/// The append finds each chain's head through the `(account_id, seq)` index, for an account
/// and for the chain without one: no append scans the table under the chain's lock.
#[tokio::test]
async fn the_chain_head_is_found_through_the_index() {
    let db = TestDatabase::new().await;
    let store = db.store();
    let account = AccountId::generate(datetime!(2026-03-01 12:00 UTC), &SeededRandom::new(5));
    for i in 0..50 {
        store.append_audit(&event(account, i)).await.unwrap();
    }
    for chain in [Some(account.as_uuid()), None] {
        let plan = keyward_store_pg::testing::explain_chain_head(db.url(), chain).await;
        assert!(plan.contains("Index") && !plan.contains("Seq Scan"), "{chain:?}:\n{plan}");
    }
}
