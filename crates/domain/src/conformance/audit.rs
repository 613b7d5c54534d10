//! Conformance: the audit trail's chains, listing and purge.

use super::*;

pub async fn audit_chains_are_per_account_and_verify<S: Store>(store: S) {
    let a = fixture(store.clone(), Plan::Pro).await;
    let b = fixture(store, Plan::Pro).await;
    let store = a.service.store();
    let (acct_a, acct_b) = (Some(a.principal.account_id), Some(b.principal.account_id));
    for (i, account) in [acct_a, acct_b, acct_a, None, acct_a, acct_b].into_iter().enumerate() {
        let record = store.append_audit(&audit_event(account, i as i64, "key.create", i as u64)).await.unwrap();
        assert_eq!(record.hash, crate::audit::chain_hash(&record.prev_hash, &record.event));
    }
    let chain_a = store.audit_chain(acct_a, 0, 100).await.unwrap();
    assert_eq!(chain_a.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(chain_a[0].prev_hash, [0; 32]);
    assert_eq!(chain_a[1].prev_hash, chain_a[0].hash);
    assert_eq!(crate::audit::first_broken_link(&chain_a, None), None);
    assert_eq!(chain_a[2].event.metadata["n"], 4, "events round-trip whole");
    assert_eq!(chain_a[2].event.context.ip, Some("203.0.113.7".parse().unwrap()));
    assert_eq!(store.audit_chain(acct_b, 0, 100).await.unwrap().len(), 2);
    assert_eq!(store.audit_chain(None, 0, 100).await.unwrap().len(), 1);
    assert_eq!(store.audit_chain(acct_a, 2, 100).await.unwrap().len(), 1, "after a seq");
    let mut chains = store.audit_chains().await.unwrap();
    chains.sort();
    assert_eq!(chains.len(), 3);
}

pub async fn concurrent_appends_never_fork_a_chain<S: Store>(store: S) {
    let f = fixture(store, Plan::Pro).await;
    let account = Some(f.principal.account_id);
    let store = f.service.store();
    let appends = (0..20).map(|i| {
        let store = store.clone();
        async move { store.append_audit(&audit_event(account, i, "key.read", 100 + i as u64)).await.unwrap() }
    });
    let records = futures_join_all(appends).await;
    assert_eq!(records.len(), 20);
    let chain = store.audit_chain(account, 0, 100).await.unwrap();
    assert_eq!(chain.iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=20).collect::<Vec<_>>());
    assert_eq!(crate::audit::first_broken_link(&chain, None), None);
}

/// `join_all` without a futures dependency: polls every future in turn until all finish.
async fn futures_join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(move |cx| {
        let mut all = true;
        for (i, fut) in pending.iter_mut().enumerate() {
            if done[i].is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => done[i] = Some(v),
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(done.iter_mut().map(|d| d.take().unwrap()).collect())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

pub async fn audit_lists_newest_first_with_filters<S: Store>(store: S) {
    let f = fixture(store, Plan::Pro).await;
    let account = f.principal.account_id;
    let store = f.service.store();
    for i in 0..10 {
        let action = if i % 2 == 0 { "key.create" } else { "key.read" };
        store.append_audit(&audit_event(Some(account), i, action, 200 + i as u64)).await.unwrap();
    }
    let all = crate::audit::AuditFilter::default();
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store.list_audit(account, &all, 3, before).await.unwrap();
        if page.is_empty() {
            break;
        }
        before = page.last().map(crate::audit::AuditRecord::position);
        seen.extend(page.into_iter().map(|r| r.event.ts));
    }
    assert_eq!(seen.len(), 10);
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "newest first");
    let creates = crate::audit::AuditFilter { action: Some("key.create".into()), ..Default::default() };
    assert_eq!(store.list_audit(account, &creates, 100, None).await.unwrap().len(), 5);
    let window = crate::audit::AuditFilter {
        since: Some(START + Duration::seconds(2)),
        until: Some(START + Duration::seconds(5)),
        ..Default::default()
    };
    assert_eq!(store.list_audit(account, &window, 100, None).await.unwrap().len(), 3);
    let by_resource = crate::audit::AuditFilter { key_id: Some("key_203".into()), ..Default::default() };
    assert_eq!(store.list_audit(account, &by_resource, 100, None).await.unwrap().len(), 1);
}

pub async fn the_purge_removes_only_old_events<S: Store>(store: S) {
    let a = fixture(store.clone(), Plan::Pro).await;
    let b = fixture(store, Plan::Pro).await;
    let store = a.service.store();
    for i in 0..6 {
        store
            .append_audit(&audit_event(Some(a.principal.account_id), i * 10, "key.read", 300 + i as u64))
            .await
            .unwrap();
        store
            .append_audit(&audit_event(Some(b.principal.account_id), i * 10, "key.read", 400 + i as u64))
            .await
            .unwrap();
    }
    let removed = store.purge_audit(Some(a.principal.account_id), START + Duration::seconds(25)).await.unwrap();
    assert_eq!(removed, 3);
    let remaining = store.audit_chain(Some(a.principal.account_id), 0, 100).await.unwrap();
    assert_eq!(remaining.len(), 3);
    assert_eq!(crate::audit::first_broken_link(&remaining, None), None, "what remains still verifies");
    assert_eq!(store.audit_chain(Some(b.principal.account_id), 0, 100).await.unwrap().len(), 6);
    // Appending after a purge continues the chain.
    let next = store.append_audit(&audit_event(Some(a.principal.account_id), 100, "key.read", 999)).await.unwrap();
    assert_eq!(next.seq, 7);
    assert_eq!(next.prev_hash, remaining[2].hash);
}
