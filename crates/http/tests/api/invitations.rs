//! The account's invitations: listing the ones that wait, withdrawing one — and what an
//! outsider, an admin facing an owner's invitation, a key without a session and the
//! invited person can do about them.

use actix_web::http::Method;
use keyward_domain::people::Role;
use serde_json::json;

use crate::helpers::*;

both_stores! {
    async fn an_account_sees_and_withdraws_its_invitations(app) {
        app.add_person("owner@acme.io", Role::Owner).await;
        app.add_person("admin@acme.io", Role::Admin).await;
        let owner = app.login_as("owner@acme.io").await;
        // cto@b.example has a login of their own, in account Beta.
        let (beta, _) = app.service.create_account("Beta", keyward_domain::Plan::Pro, false).await.unwrap();
        let email = keyward_domain::people::Email::new("cto@b.example").unwrap();
        let password = keyward_domain::password::Password::new(PASSWORD.into()).unwrap();
        app.people.add_member(beta.id, email, Role::Owner, Some(password)).await.unwrap();
        app.step_up(&owner).await;
        let invited = app.with_session(Method::POST, "/v1/account/users", &owner, Some(json!({"email": "cto@b.example", "role": "owner"}))).await;
        assert_eq!(invited.status.as_u16(), 202, "{:#}", invited.body);
        let cto_id = invited.body["id"].as_str().unwrap().to_owned();

        // The account lists it, to a session and to an account key alike.
        let sent = app.with_session(Method::GET, "/v1/account/invitations", &owner, None).await;
        assert_eq!(sent.status.as_u16(), 200, "{:#}", sent.body);
        let listed = &sent.body["data"];
        assert_eq!(listed.as_array().map(Vec::len), Some(1), "{:#}", sent.body);
        assert_eq!((listed[0]["user_id"].as_str(), listed[0]["email"].as_str(), listed[0]["role"].as_str()), (Some(cto_id.as_str()), Some("cto@b.example"), Some("owner")));
        assert!(listed[0]["invited_by"].as_str().unwrap().starts_with("usr_"), "{:#}", sent.body);
        assert_eq!(app.get("/v1/account/invitations").await.body, sent.body);

        // Another account sees none of it and cannot withdraw it.
        let (other, _) = app.service.create_account("Other", keyward_domain::Plan::Pro, false).await.unwrap();
        let email = keyward_domain::people::Email::new("boss@other.io").unwrap();
        let password = keyward_domain::password::Password::new(PASSWORD.into()).unwrap();
        app.people.add_member(other.id, email, Role::Owner, Some(password)).await.unwrap();
        let boss = app.login_as("boss@other.io").await;
        app.step_up(&boss).await;
        assert_eq!(app.with_session(Method::GET, "/v1/account/invitations", &boss, None).await.body["data"], json!([]));
        let path = format!("/v1/account/invitations/{cto_id}");
        app.with_session(Method::DELETE, &path, &boss, None).await.assert_error(404, "not_found");

        // An account key cannot withdraw (people are managed in a session), nor can a
        // session without the step-up, nor an admin an invitation to be an owner.
        app.delete(&path).await.assert_error(403, "session_required");
        let admin = app.login_as("admin@acme.io").await;
        app.with_session(Method::DELETE, &path, &admin, None).await.assert_error(403, "step_up_required");
        app.step_up(&admin).await;
        app.with_session(Method::DELETE, &path, &admin, None).await.assert_error(403, "forbidden");
        app.with_session(Method::DELETE, "/v1/account/invitations/usr_nonsense", &owner, None).await.assert_error(404, "not_found");

        // The owner withdraws it: gone from both sides, and it cannot be accepted.
        let withdrawn = app.with_session(Method::DELETE, &path, &owner, None).await;
        assert_eq!(withdrawn.status.as_u16(), 204, "{:#}", withdrawn.body);
        app.with_session(Method::DELETE, &path, &owner, None).await.assert_error(404, "not_found");
        assert_eq!(app.get("/v1/account/invitations").await.body["data"], json!([]));
        let cto = app.login_as("cto@b.example").await;
        assert_eq!(app.with_session(Method::GET, "/v1/auth/invitations", &cto, None).await.body["data"], json!([]));
        let acme = app.account_id.clone();
        app.with_session(Method::POST, &format!("/v1/auth/invitations/{acme}/accept"), &cto, None).await.assert_error(404, "not_found");
        let actions = app.audit_actions().await;
        assert!(actions.iter().any(|(a, _)| a == "user.invitation_withdraw"), "{actions:?}");
    }
}
