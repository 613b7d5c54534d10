//! Route tables and forward auth (issue #31): a table is stored per keyspace, seen by the
//! keyspace's id alone, replaced whole, gone with its keyspace; and a forward-auth check
//! accepts only the keys of the gate's keyspace, with the scopes its route needs.

use super::*;
use crate::{
    error::ManageError,
    gateway::{RouteDefault, RouteRuleInput, RouteTableInput},
    id::KeyspaceId,
    key_service::ForwardRequest,
    verdict::VerifyCode,
};

fn servers_table() -> RouteTableInput {
    RouteTableInput {
        default: RouteDefault::Deny,
        query_parameter: Some("api_key".into()),
        rules: vec![
            RouteRuleInput {
                methods: vec!["GET".into()],
                path: "/v1/servers/**".into(),
                scopes: vec!["servers:read".into()],
            },
            RouteRuleInput { methods: vec![], path: "/v1/public/**".into(), scopes: vec![] },
        ],
    }
}

pub async fn route_tables_are_kept_per_keyspace_and_bind_forward_auth<S: Store>(store: S) {
    let a = fixture(store.clone(), Plan::Pro).await;
    let b = fixture(store, Plan::Pro).await;
    let space = NewKeyspace { name: "api".into(), prefix: Some("gw".into()), ..NewKeyspace::default() };
    let api = a.service.create_keyspace(&a.principal, space).await.unwrap();

    // A keyspace nobody configured: any valid key of it passes.
    let gate = a.service.gate(api.id).await.unwrap();
    assert_eq!((gate.account_id, gate.keyspace_id, gate.updated_at), (a.principal.account_id, api.id, None));
    assert_eq!((gate.routes.default, gate.routes.rules.len()), (RouteDefault::AnyKey, 0));
    let unknown = KeyspaceId::generate(START, &SeededRandom::new(99));
    assert!(matches!(a.service.gate(unknown).await, Err(ManageError::NotFound)));

    // Another account's keyspace does not exist for it, to read or to write.
    assert!(matches!(b.service.routes(&b.principal, api.id).await, Err(ManageError::NotFound)));
    assert!(matches!(b.service.put_routes(&b.principal, api.id, &servers_table()).await, Err(ManageError::NotFound)));
    assert_eq!(a.service.gate(api.id).await.unwrap().routes.rules.len(), 0, "B changed nothing");

    // A bad table is refused whole, naming the field.
    let mut bad = servers_table();
    bad.rules[1].path = "/v1/**/x".into();
    let Err(ManageError::Invalid(errors)) = a.service.put_routes(&a.principal, api.id, &bad).await else {
        panic!("a bad pattern is a validation error")
    };
    assert_eq!(errors.errors()[0].field, "rules[1].path");

    a.clock.advance(Duration::seconds(3));
    let put = a.service.put_routes(&a.principal, api.id, &servers_table()).await.unwrap();
    let read = a.service.routes(&a.principal, api.id).await.unwrap();
    assert_eq!(read.routes, put.routes);
    assert_eq!(read.routes.to_input(), servers_table(), "read back as written");
    assert_eq!(read.updated_at, Some(START + Duration::seconds(3)));
    assert_eq!(a.service.gate(api.id).await.unwrap().routes, put.routes, "the gate sees the new table");

    let issue = async |keyspace: Option<KeyspaceId>, scopes: &[&str]| {
        let input = NewKey {
            keyspace_id: keyspace,
            scopes: Some(scopes.iter().map(|s| (*s).to_owned()).collect()),
            ..named("gw")
        };
        a.service.create_key(&a.principal, input).await.unwrap()
    };
    let reader = issue(Some(api.id), &["servers:read"]).await;
    let plain = issue(Some(api.id), &[]).await;
    let elsewhere = issue(None, &["servers:read"]).await;
    let foreign = b.service.create_key(&b.principal, named("b")).await.unwrap();
    let gate = a.service.gate(api.id).await.unwrap();
    let check = async |key: Option<&str>, method: &str, path: &str| {
        let request = ForwardRequest { key, method, path, ip: None };
        a.service.forward_auth(&gate, request, &Unlimited).await.unwrap()
    };
    let secret = |issued: &crate::key_service::IssuedKey| issued.plaintext.expose_secret().to_owned();

    let passed = check(Some(&secret(&reader)), "GET", "/v1/servers/1").await;
    assert_eq!(passed.code, VerifyCode::Valid);
    assert_eq!(passed.key.unwrap().id, reader.key.id);
    assert_eq!(check(Some(&secret(&plain)), "GET", "/v1/servers/1").await.code, VerifyCode::InsufficientScope);
    assert_eq!(check(Some(&secret(&plain)), "POST", "/v1/public/x").await.code, VerifyCode::Valid);
    assert_eq!(check(Some(&secret(&reader)), "POST", "/v1/servers").await.code, VerifyCode::RouteNotAllowed);
    assert_eq!(check(Some(&secret(&reader)), "GET", "/v2").await.code, VerifyCode::RouteNotAllowed);
    // Keys of another keyspace, or of another account, are no keys of this gate.
    for other in [&elsewhere, &foreign] {
        let outcome = check(Some(&secret(other)), "GET", "/v1/servers/1").await;
        assert_eq!((outcome.code, outcome.key.is_none()), (VerifyCode::NotFound, true));
    }
    assert_eq!(check(None, "GET", "/v1/public/x").await.code, VerifyCode::NotFound);
    assert_eq!(check(Some("kw_live_nonsense"), "GET", "/v1/public/x").await.code, VerifyCode::NotFound);
    // A denied route still tells a revoked key from a valid one.
    a.service.revoke_key(&a.principal, reader.key.id).await.unwrap();
    let gate = a.service.gate(api.id).await.unwrap();
    let request = ForwardRequest { key: Some(reader.plaintext.expose_secret()), method: "POST", path: "/x", ip: None };
    assert_eq!(a.service.forward_auth(&gate, request, &Unlimited).await.unwrap().code, VerifyCode::Revoked);

    // The table goes with its keyspace.
    a.service.revoke_key(&a.principal, plain.key.id).await.unwrap();
    a.service.delete_keyspace(&a.principal, api.id).await.unwrap();
    assert!(matches!(a.service.gate(api.id).await, Err(ManageError::NotFound)));
    let again = NewKeyspace { name: "api".into(), prefix: Some("gw".into()), ..NewKeyspace::default() };
    let api2 = a.service.create_keyspace(&a.principal, again).await.unwrap();
    assert_eq!(a.service.gate(api2.id).await.unwrap().routes.rules.len(), 0);
}
