//! Issue #29 item 2: a password change ends what the old password opened — every other
//! session and every temporary key of that login, in every account it belongs to.

use actix_web::http::Method;
use keyward_domain::people::Role;
use serde_json::json;

use crate::helpers::*;

both_stores! {
    async fn a_password_change_ends_every_other_session_and_temporary_key(app) {
        app.add_person("ada@acme.io", Role::Admin).await;
        // Ada also belongs to a second account, where she logged in too.
        let (beta, _) = app.service.create_account("Beta", keyward_domain::Plan::Pro, false).await.unwrap();
        let email = keyward_domain::people::Email::new("ada@acme.io").unwrap();
        app.people.add_member(beta.id, email, Role::Member, None).await.unwrap();

        let acme = app.account_id.clone();
        let (laptop, first) = app.login(json!({"email": "ada@acme.io", "password": PASSWORD, "account_id": acme, "temporary_key": true})).await;
        let laptop = laptop.unwrap();
        let laptop_key = first.body["temporary_key"]["key"].as_str().unwrap().to_owned();
        let (phone, _) = app.login(json!({"email": "ada@acme.io", "password": PASSWORD, "account_id": acme})).await;
        let phone = phone.unwrap();
        let (in_beta, second) = app.login(json!({"email": "ada@acme.io", "password": PASSWORD, "account_id": beta.id.to_string(), "temporary_key": true})).await;
        let in_beta = in_beta.unwrap();
        let beta_key = second.body["temporary_key"]["key"].as_str().unwrap().to_owned();
        assert_eq!(app.call(Method::GET, "/v1/keys", &laptop_key, None).await.status.as_u16(), 200);

        let changed = app.with_session(Method::POST, "/v1/account/password", &phone, Some(json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}))).await;
        assert_eq!(changed.status.as_u16(), 200, "{:#}", changed.body);
        let fresh = changed.headers.get_all("set-cookie").filter_map(|v| v.to_str().ok()).find_map(|c| {
            c.strip_prefix("keyward_session=").map(|rest| rest.split(';').next().unwrap_or_default().to_owned())
        }).expect("a new session cookie");

        for (name, session) in [("laptop", &laptop), ("phone", &phone), ("beta", &in_beta)] {
            let reply = app.with_session(Method::GET, "/v1/auth/session", session, None).await;
            assert_eq!(reply.status.as_u16(), 401, "the {name} session outlived the password change: {:#}", reply.body);
        }
        for (name, key) in [("laptop", &laptop_key), ("beta", &beta_key)] {
            let reply = app.call(Method::GET, "/v1/account", key, None).await;
            assert_eq!(reply.status.as_u16(), 401, "the {name} temporary key outlived the password change: {:#}", reply.body);
        }
        // The session that changed it goes on, as the fresh one.
        assert_eq!(app.with_session(Method::GET, "/v1/auth/session", &fresh, None).await.status.as_u16(), 200);
        let trail = app.account_trail().await;
        let change = trail.iter().rev().find(|r| r.event.action.as_ref() == "auth.password_change")
            .unwrap_or_else(|| panic!("not audited: {:?}", trail.iter().map(|r| r.event.action.to_string()).collect::<Vec<_>>()));
        assert_eq!(change.event.metadata.get("sessions_ended").and_then(|v| v.as_str()), Some("3"), "{:?}", change.event.metadata);
        assert_eq!(change.event.metadata.get("temporary_keys_revoked").and_then(|v| v.as_str()), Some("2"), "{:?}", change.event.metadata);
    }

    async fn the_operators_reset_ends_every_session_and_temporary_key(app) {
        app.add_person("ada@acme.io", Role::Admin).await;
        let (session, first) = app.login(json!({"email": "ada@acme.io", "password": PASSWORD, "temporary_key": true})).await;
        let session = session.unwrap();
        let key = first.body["temporary_key"]["key"].as_str().unwrap().to_owned();
        let email = keyward_domain::people::Email::new("ada@acme.io").unwrap();
        let password = keyward_domain::password::Password::new("an operator's choice".into()).unwrap();
        app.people.set_password(&email, password, true).await.unwrap();
        app.with_session(Method::GET, "/v1/auth/session", &session, None).await.assert_error(401, "unauthorized");
        app.call(Method::GET, "/v1/account", &key, None).await.assert_error(401, "unauthorized");
    }
}
