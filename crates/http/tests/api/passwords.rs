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

/// The link a mail in the outbox holds (`{public_url}/{path}/{token}`), claimed as the
/// worker would.
async fn mailed_token<S: keyward_domain::Store>(app: &TestApp<S>, to: &str, path: &str) -> String {
    let now = keyward_domain::Clock::now(&*app.clock);
    let claimed = app.service.store().claim_mail(now, now + time::Duration::seconds(60), 100).await.unwrap();
    let mail =
        claimed.into_iter().map(|q| q.mail).find(|m| m.to.as_str() == to).unwrap_or_else(|| panic!("no mail to {to}"));
    let prefix = format!("http://keyward.test/{path}/");
    let at = mail.text.find(&prefix).unwrap_or_else(|| panic!("{:?}", mail.text)) + prefix.len();
    mail.text[at..at + 43].to_owned()
}

both_stores! {
    async fn a_reset_by_mail_works_once_and_ends_every_session(app) {
        let store = app.service.store().clone();
        let mailing = TestApp::with_policies(store, keyward_http::Policies { mail: true, ..Default::default() }).await;
        mailing.add_person("ada@acme.io", Role::Admin).await;
        let (session, first) = mailing.login(json!({"email": "ada@acme.io", "password": PASSWORD, "temporary_key": true})).await;
        let session = session.unwrap();
        let key = first.body["temporary_key"]["key"].as_str().unwrap().to_owned();

        // The same answer for an address with a login and one without.
        let known = mailing.send(actix_web::test::TestRequest::post().uri("/v1/auth/password-reset").set_json(json!({"email": "ada@acme.io"}))).await;
        let unknown = mailing.send(actix_web::test::TestRequest::post().uri("/v1/auth/password-reset").set_json(json!({"email": "nobody@acme.io"}))).await;
        assert_eq!((known.status.as_u16(), &known.body), (unknown.status.as_u16(), &unknown.body));
        assert_eq!(known.status.as_u16(), 202);
        assert_eq!(mailing.service.store().mail_backlog().await.unwrap().pending, 1, "one mail, to the login");
        let token = mailed_token(&mailing, "ada@acme.io", "password-reset").await;

        let path = format!("/v1/auth/password-reset/{token}");
        let short = mailing.send(actix_web::test::TestRequest::post().uri(&path).set_json(json!({"password": "short"}))).await;
        short.assert_error(400, "validation_failed");
        let done = mailing.send(actix_web::test::TestRequest::post().uri(&path).set_json(json!({"password": "a brand new passphrase"}))).await;
        assert_eq!(done.status.as_u16(), 204, "{:#}", done.body);
        mailing.send(actix_web::test::TestRequest::post().uri(&path).set_json(json!({"password": "another passphrase"}))).await.assert_error(404, "not_found");
        mailing.with_session(Method::GET, "/v1/auth/session", &session, None).await.assert_error(401, "unauthorized");
        mailing.call(Method::GET, "/v1/account", &key, None).await.assert_error(401, "unauthorized");
        let (_, again) = mailing.login(json!({"email": "ada@acme.io", "password": "a brand new passphrase"})).await;
        assert_eq!(again.status.as_u16(), 200, "{:#}", again.body);

        // An hour later a link is dead.
        mailing.send(actix_web::test::TestRequest::post().uri("/v1/auth/password-reset").set_json(json!({"email": "ada@acme.io"}))).await;
        let late = mailed_token(&mailing, "ada@acme.io", "password-reset").await;
        mailing.clock.advance(time::Duration::hours(1) + time::Duration::seconds(1));
        let expired = mailing.send(actix_web::test::TestRequest::post().uri(&format!("/v1/auth/password-reset/{late}")).set_json(json!({"password": "too late for this"}))).await;
        expired.assert_error(404, "not_found");
        // Asking is throttled per address, like login.
        let mut refused = None;
        for _ in 0..10 {
            let reply = mailing.send(actix_web::test::TestRequest::post().uri("/v1/auth/password-reset").set_json(json!({"email": "flood@acme.io"}))).await;
            if reply.status.as_u16() == 429 {
                refused = Some(reply);
                break;
            }
        }
        refused.expect("a flood of resets for one address is throttled").assert_error(429, "rate_limited");
    }

    async fn with_a_mailer_an_invitation_goes_only_to_the_address(app) {
        let store = app.service.store().clone();
        let mailing = TestApp::with_policies(store, keyward_http::Policies { mail: true, ..Default::default() }).await;
        mailing.add_person("owner@acme.io", Role::Owner).await;
        let owner = mailing.login_as("owner@acme.io").await;
        mailing.step_up(&owner).await;
        let invited = mailing.with_session(Method::POST, "/v1/account/users", &owner, Some(json!({"email": "grace@acme.io", "role": "member"}))).await;
        assert_eq!(invited.status.as_u16(), 202, "{:#}", invited.body);
        assert!(invited.body.get("accept_url").is_none(), "{:#}", invited.body);
        let token = mailed_token(&mailing, "grace@acme.io", "invitations").await;
        let seen = mailing.send(actix_web::test::TestRequest::get().uri(&format!("/v1/invitations/{token}"))).await;
        assert_eq!((seen.status.as_u16(), seen.body["email"].as_str()), (200, Some("grace@acme.io")));
        // Without a mailer nobody gets a reset mail: the answer is the same, nothing is queued.
        app.add_person("bob@acme.io", Role::Member).await;
        let before = app.service.store().mail_backlog().await.unwrap().pending;
        let reply = app.send(actix_web::test::TestRequest::post().uri("/v1/auth/password-reset").set_json(json!({"email": "bob@acme.io"}))).await;
        assert_eq!(reply.status.as_u16(), 202);
        assert_eq!(app.service.store().mail_backlog().await.unwrap().pending, before);
    }
}
