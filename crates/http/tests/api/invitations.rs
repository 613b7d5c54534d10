//! Invitations (issue #29): everyone joins by a link's token, never by an address alone.
//! The takeover a review reproduced, the same answer for every address, single use, expiry,
//! declining, withdrawal (by hand, and when the inviter stops managing the account), a
//! login of no account, and what an outsider can do with any of it.

use actix_web::{http::Method, test::TestRequest};
use keyward_domain::people::Role;
use serde_json::{Value, json};

use crate::helpers::*;

/// The token of a 202's `accept_url` (`{public_url}/invitations/{token}`).
fn token_of(invited: &Reply) -> String {
    let url = invited.body["accept_url"].as_str().unwrap_or_else(|| panic!("no accept_url: {:#}", invited.body));
    let token = url.strip_prefix("http://keyward.test/invitations/").unwrap_or_else(|| panic!("{url}"));
    assert_eq!(token.len(), 43, "{url}");
    token.to_owned()
}

fn keys_of(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

impl<S: keyward_domain::Store> TestApp<S> {
    /// An owner of a new account `name`, signed in and stepped up; returns its session.
    async fn owner_of(&self, name: &str, email: &str) -> String {
        let (account, _) = self.service.create_account(name, keyward_domain::Plan::Pro, false).await.unwrap();
        let password = keyward_domain::password::Password::new(PASSWORD.into()).unwrap();
        let address = keyward_domain::people::Email::new(email).unwrap();
        self.people.add_member(account.id, address, Role::Owner, Some(password)).await.unwrap();
        let (cookie, reply) =
            self.login(json!({"email": email, "password": PASSWORD, "account_id": account.id.to_string()})).await;
        assert_eq!(reply.status.as_u16(), 200, "{:#}", reply.body);
        let session = cookie.unwrap();
        self.step_up(&session).await;
        session
    }

    async fn invite(&self, session: &str, email: &str, role: &str) -> Reply {
        self.with_session(Method::POST, "/v1/account/users", session, Some(json!({"email": email, "role": role}))).await
    }

    async fn anonymous(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut request = TestRequest::default().method(method).uri(path);
        if let Some(body) = body {
            request = request.set_json(body);
        }
        self.send(request).await
    }
}

both_stores! {
    async fn holding_a_login_of_an_address_no_longer_takes_over_an_account(app) {
        // The review's attack: Evil's admin enrols newhire@acme.test in Evil and keeps the
        // login; weeks later Acme invites the same address.
        let evil = app.owner_of("Evil", "boss@evil.test").await;
        let enrolled = app.invite(&evil, "newhire@acme.test", "member").await;
        assert_eq!(enrolled.status.as_u16(), 202, "{:#}", enrolled.body);
        let evil_token = token_of(&enrolled);
        let made = app.anonymous(Method::POST, &format!("/v1/invitations/{evil_token}/accept"), Some(json!({"password": "evil's own password"}))).await;
        assert_eq!(made.status.as_u16(), 200, "{:#}", made.body);
        let (held, _) = app.login(json!({"email": "newhire@acme.test", "password": "evil's own password"})).await;
        let held = held.unwrap();

        let acme = app.owner_of("Acme Corp", "cto@acme.test").await;
        let invited = app.invite(&acme, "newhire@acme.test", "admin").await;
        // The same answer as for an address nobody has a login for: nothing to probe.
        let fresh = app.invite(&acme, "nobody@acme.test", "admin").await;
        assert_eq!((invited.status.as_u16(), fresh.status.as_u16()), (202, 202));
        assert_eq!(keys_of(&invited.body), keys_of(&fresh.body), "{:#} vs {:#}", invited.body, fresh.body);
        assert_eq!(keys_of(&invited.body["invitation"]), keys_of(&fresh.body["invitation"]));
        assert_eq!(invited.body["status"], "invited");
        assert!(invited.body.get("initial_password").is_none() && invited.body["invitation"].get("user_id").is_none());
        assert_eq!(invited.headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
        let acme_token = token_of(&invited);

        // Evil, signed in as newhire, has no way to Acme without the token mailed to newhire.
        let waiting = app.with_session(Method::GET, "/v1/auth/invitations", &held, None).await;
        assert_eq!(waiting.status.as_u16(), 200, "{:#}", waiting.body);
        let acme_id = waiting.body["data"][0]["account_id"].as_str().unwrap().to_owned();
        assert!(waiting.body.to_string().find(&acme_token).is_none(), "no token in the list");
        for path in [format!("/v1/auth/invitations/{acme_id}/accept"), format!("/v1/invitations/{evil_token}/accept"),
            format!("/v1/invitations/{}/accept", "A".repeat(43)), format!("/v1/invitations/{acme_id}/accept")] {
            let reply = app.with_session(Method::POST, &path, &held, Some(json!({}))).await;
            assert_eq!(reply.status.as_u16(), 404, "{path}: {:#}", reply.body);
        }
        app.login(json!({"email": "newhire@acme.test", "password": "evil's own password", "account_id": acme_id})).await.1.assert_error(403, "forbidden");
        // Another login's session with Acme's token is refused too, and so is no session.
        let accept = format!("/v1/invitations/{acme_token}/accept");
        app.with_session(Method::POST, &accept, &evil, Some(json!({}))).await.assert_error(403, "forbidden");
        app.anonymous(Method::POST, &accept, Some(json!({}))).await.assert_error(401, "unauthorized");
        app.anonymous(Method::POST, &accept, Some(json!({"password": "another password"}))).await.assert_error(401, "unauthorized");
        let members = app.with_session(Method::GET, "/v1/account/users", &acme, None).await;
        assert!(!members.body.to_string().contains("newhire"), "{:#}", members.body);
        // Only the login signed in and the token together join: the token is still good.
        let accepted = app.with_session(Method::POST, &accept, &held, Some(json!({}))).await;
        assert_eq!(accepted.status.as_u16(), 200, "the login that holds the link joins: {:#}", accepted.body);
    }

    async fn a_new_address_joins_with_a_password_of_its_own_once(app) {
        let owner = app.owner_of("Beta", "owner@beta.test").await;
        let invited = app.invite(&owner, "Grace@Beta.test", "admin").await;
        assert_eq!(invited.status.as_u16(), 202, "{:#}", invited.body);
        assert_eq!(invited.body["invitation"]["email"], "grace@beta.test");
        assert!(invited.body["invitation"]["id"].as_str().unwrap().starts_with("inv_"));
        let token = token_of(&invited);
        let link = format!("/v1/invitations/{token}");

        let seen = app.anonymous(Method::GET, &link, None).await;
        assert_eq!(seen.status.as_u16(), 200, "{:#}", seen.body);
        assert_eq!((seen.body["account_name"].as_str(), seen.body["role"].as_str(), seen.body["email"].as_str()), (Some("Beta"), Some("admin"), Some("grace@beta.test")));
        assert_eq!((seen.body["invited_by"].as_str(), seen.body["has_login"].as_bool()), (Some("owner@beta.test"), Some(false)));
        assert_eq!(seen.headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));

        let accept = format!("{link}/accept");
        let missing = app.anonymous(Method::POST, &accept, None).await;
        missing.assert_error(400, "validation_failed");
        assert_eq!(missing.body["details"][0]["field"], "password");
        let short = app.anonymous(Method::POST, &accept, Some(json!({"password": "short"}))).await;
        short.assert_error(400, "validation_failed");
        assert_eq!(short.body["details"][0]["field"], "password");
        // Nothing half-made: the refused attempts left no login behind.
        assert_eq!(app.anonymous(Method::GET, &link, None).await.body["has_login"], false);

        let joined = app.anonymous(Method::POST, &accept, Some(json!({"password": PASSWORD}))).await;
        assert_eq!(joined.status.as_u16(), 200, "{:#}", joined.body);
        assert_eq!((joined.body["role"].as_str(), joined.body["created_login"].as_bool()), (Some("admin"), Some(true)));
        assert_eq!(joined.headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
        let cookie = joined.headers.get_all("set-cookie").filter_map(|v| v.to_str().ok()).find_map(|c| {
            c.strip_prefix("keyward_session=").map(|rest| rest.split(';').next().unwrap_or_default().to_owned())
        }).expect("a session in the account joined");
        let session = app.with_session(Method::GET, "/v1/auth/session", &cookie, None).await;
        assert_eq!((session.body["account"]["name"].as_str(), session.body["role"].as_str()), (Some("Beta"), Some("admin")), "{:#}", session.body);
        // Used once: the second use, and a look, find nothing.
        app.anonymous(Method::POST, &accept, Some(json!({"password": PASSWORD}))).await.assert_error(404, "not_found");
        app.anonymous(Method::GET, &link, None).await.assert_error(404, "not_found");
        assert_eq!(app.login_as("grace@beta.test").await.len(), 43);
        let trail: Vec<String> = app.audit_actions().await.into_iter().map(|(a, _)| a).collect();
        for action in ["user.invite", "user.invitation_read", "user.invitation_accept"] {
            assert!(trail.iter().any(|a| a == action), "{action} missing from {trail:?}");
        }
    }

    async fn a_link_expires_is_replaced_by_a_new_invitation_and_can_be_declined(app) {
        let owner = app.owner_of("Beta", "owner@beta.test").await;
        let first = token_of(&app.invite(&owner, "ada@beta.test", "member").await);
        let second = token_of(&app.invite(&owner, "ada@beta.test", "viewer").await);
        app.anonymous(Method::GET, &format!("/v1/invitations/{first}"), None).await.assert_error(404, "not_found");
        assert_eq!(app.anonymous(Method::GET, &format!("/v1/invitations/{second}"), None).await.body["role"], "viewer");
        let sent = app.with_session(Method::GET, "/v1/account/invitations", &owner, None).await;
        assert_eq!(sent.body["data"].as_array().map(Vec::len), Some(1), "{:#}", sent.body);

        // Seven days, then nothing.
        app.clock.advance(time::Duration::days(7) + time::Duration::seconds(1));
        app.anonymous(Method::GET, &format!("/v1/invitations/{second}"), None).await.assert_error(404, "not_found");
        app.anonymous(Method::POST, &format!("/v1/invitations/{second}/accept"), Some(json!({"password": PASSWORD}))).await.assert_error(404, "not_found");

        // Declined: the link is dead, and the account's trail says so.
        let owner = app.login_as("owner@beta.test").await;
        app.step_up(&owner).await;
        let third = token_of(&app.invite(&owner, "ada@beta.test", "member").await);
        let declined = app.anonymous(Method::DELETE, &format!("/v1/invitations/{third}"), None).await;
        assert_eq!(declined.status.as_u16(), 204, "{:#}", declined.body);
        app.anonymous(Method::POST, &format!("/v1/invitations/{third}/accept"), Some(json!({"password": PASSWORD}))).await.assert_error(404, "not_found");
        app.anonymous(Method::DELETE, &format!("/v1/invitations/{third}"), None).await.assert_error(404, "not_found");
        assert!(app.audit_actions().await.iter().any(|(a, _)| a == "user.invitation_decline"));
        // Malformed tokens are no invitation, without a lookup or a 500.
        for bad in ["short", "%00", &"A".repeat(44), &format!("{}%00", "A".repeat(42))] {
            let reply = app.anonymous(Method::GET, &format!("/v1/invitations/{bad}"), None).await;
            assert_eq!(reply.status.as_u16(), 404, "{bad}: {:#}", reply.body);
        }
    }

    async fn an_account_sees_and_withdraws_its_invitations(app) {
        let owner = app.owner_of("Beta", "owner@beta.test").await;
        let invited = app.invite(&owner, "cto@b.example", "owner").await;
        let token = token_of(&invited);
        let id = invited.body["invitation"]["id"].as_str().unwrap().to_owned();

        let sent = app.with_session(Method::GET, "/v1/account/invitations", &owner, None).await;
        assert_eq!(sent.status.as_u16(), 200, "{:#}", sent.body);
        let listed = &sent.body["data"][0];
        assert_eq!((listed["id"].as_str(), listed["email"].as_str(), listed["role"].as_str()), (Some(id.as_str()), Some("cto@b.example"), Some("owner")));
        assert!(listed["invited_by"].as_str().unwrap().starts_with("usr_"), "{:#}", sent.body);
        assert!(!sent.body.to_string().contains(&token), "the list holds no token");

        // Another account sees none of it and cannot withdraw it.
        let other = app.owner_of("Other", "boss@other.io").await;
        assert_eq!(app.with_session(Method::GET, "/v1/account/invitations", &other, None).await.body["data"], json!([]));
        let path = format!("/v1/account/invitations/{id}");
        app.with_session(Method::DELETE, &path, &other, None).await.assert_error(404, "not_found");
        // A key cannot withdraw (people are managed in a session), nor an admin an
        // invitation to be an owner.
        app.delete(&path).await.assert_error(403, "session_required");
        let admin_link = token_of(&app.invite(&owner, "admin@beta.test", "admin").await);
        app.anonymous(Method::POST, &format!("/v1/invitations/{admin_link}/accept"), Some(json!({"password": PASSWORD}))).await;
        let admin = app.login_as("admin@beta.test").await;
        app.with_session(Method::DELETE, &path, &admin, None).await.assert_error(403, "step_up_required");
        app.step_up(&admin).await;
        app.with_session(Method::DELETE, &path, &admin, None).await.assert_error(403, "forbidden");
        app.with_session(Method::DELETE, "/v1/account/invitations/inv_nonsense", &owner, None).await.assert_error(404, "not_found");

        let withdrawn = app.with_session(Method::DELETE, &path, &owner, None).await;
        assert_eq!(withdrawn.status.as_u16(), 204, "{:#}", withdrawn.body);
        app.with_session(Method::DELETE, &path, &owner, None).await.assert_error(404, "not_found");
        app.anonymous(Method::GET, &format!("/v1/invitations/{token}"), None).await.assert_error(404, "not_found");
        assert!(app.audit_actions().await.iter().any(|(a, _)| a == "user.invitation_withdraw"));
    }

    async fn an_inviter_who_stops_managing_the_account_takes_their_invitations_along(app) {
        let owner = app.owner_of("Beta", "owner@beta.test").await;
        for (email, role) in [("leaver@beta.test", "admin"), ("demoted@beta.test", "admin")] {
            let link = token_of(&app.invite(&owner, email, role).await);
            let joined = app.anonymous(Method::POST, &format!("/v1/invitations/{link}/accept"), Some(json!({"password": PASSWORD}))).await;
            assert_eq!(joined.status.as_u16(), 200, "{:#}", joined.body);
        }
        let leaver = app.login_as("leaver@beta.test").await;
        app.step_up(&leaver).await;
        let demoted = app.login_as("demoted@beta.test").await;
        app.step_up(&demoted).await;
        // Each invites a second address of their own before leaving.
        let by_leaver = token_of(&app.invite(&leaver, "leaver2@elsewhere.test", "admin").await);
        let by_demoted = token_of(&app.invite(&demoted, "demoted2@elsewhere.test", "admin").await);
        let by_owner = token_of(&app.invite(&owner, "kept@beta.test", "member").await);

        let users = app.with_session(Method::GET, "/v1/account/users", &owner, None).await;
        let id_of = |email: &str| users.body["data"].as_array().unwrap().iter().find(|u| u["email"] == email).unwrap()["id"].as_str().unwrap().to_owned();
        let removed = app.with_session(Method::DELETE, &format!("/v1/account/users/{}", id_of("leaver@beta.test")), &owner, None).await;
        assert_eq!(removed.status.as_u16(), 204, "{:#}", removed.body);
        let changed = app.with_session(Method::PATCH, &format!("/v1/account/users/{}", id_of("demoted@beta.test")), &owner, Some(json!({"role": "member"}))).await;
        assert_eq!(changed.status.as_u16(), 200, "{:#}", changed.body);

        for token in [&by_leaver, &by_demoted] {
            let reply = app.anonymous(Method::POST, &format!("/v1/invitations/{token}/accept"), Some(json!({"password": PASSWORD}))).await;
            reply.assert_error(404, "not_found");
        }
        assert_eq!(app.anonymous(Method::GET, &format!("/v1/invitations/{by_owner}"), None).await.status.as_u16(), 200, "the owner's stands");
        // The removal's and the demotion's events name what they withdrew.
        let trail = app.service.store().audit_chains().await.unwrap();
        let mut withdrawn = Vec::new();
        for chain in trail {
            for record in app.service.store().audit_chain(chain, 0, 10_000).await.unwrap() {
                if let Some(ids) = record.event.metadata.get("invitations_withdrawn").and_then(|v| v.as_str()) {
                    withdrawn.push((record.event.action.to_string(), ids.split(',').filter(|s| !s.is_empty()).count()));
                }
            }
        }
        assert_eq!(withdrawn, vec![("user.remove".to_owned(), 1), ("user.update".to_owned(), 1)]);
    }

    async fn a_person_removed_and_invited_again_signs_in_and_accepts(app) {
        let owner = app.owner_of("Beta", "owner@beta.test").await;
        let link = token_of(&app.invite(&owner, "ada@beta.test", "member").await);
        app.anonymous(Method::POST, &format!("/v1/invitations/{link}/accept"), Some(json!({"password": PASSWORD}))).await;
        let users = app.with_session(Method::GET, "/v1/account/users", &owner, None).await;
        let ada_id = users.body["data"].as_array().unwrap().iter().find(|u| u["email"] == "ada@beta.test").unwrap()["id"].as_str().unwrap().to_owned();
        app.with_session(Method::DELETE, &format!("/v1/account/users/{ada_id}"), &owner, None).await;
        let again = token_of(&app.invite(&owner, "ada@beta.test", "viewer").await);

        // A login of no account signs in: its session sees itself and its invitations, no more.
        let (cookie, login) = app.login(json!({"email": "ada@beta.test", "password": PASSWORD})).await;
        assert_eq!(login.status.as_u16(), 200, "{:#}", login.body);
        assert!(login.body["account"].is_null() && login.body["role"].is_null(), "{:#}", login.body);
        assert_eq!(login.body["memberships"], json!([]));
        let ada = cookie.unwrap();
        let session = app.with_session(Method::GET, "/v1/auth/session", &ada, None).await;
        assert_eq!((session.status.as_u16(), session.body["user"]["email"].as_str()), (200, Some("ada@beta.test")), "{:#}", session.body);
        assert!(session.body["account"].is_null());
        let waiting = app.with_session(Method::GET, "/v1/auth/invitations", &ada, None).await;
        assert_eq!((waiting.body["data"][0]["name"].as_str(), waiting.body["data"][0]["role"].as_str()), (Some("Beta"), Some("viewer")), "{:#}", waiting.body);
        for (method, path) in [(Method::GET, "/v1/keys"), (Method::GET, "/v1/account"), (Method::GET, "/v1/account/users"), (Method::POST, "/v1/account/verify-password")] {
            let reply = app.with_session(method.clone(), path, &ada, Some(json!({"password": PASSWORD}))).await;
            assert_eq!(reply.status.as_u16(), 403, "{method} {path}: {:#}", reply.body);
        }
        // Accepting with the link, signed in: a member again, in a session of the account.
        let accepted = app.with_session(Method::POST, &format!("/v1/invitations/{again}/accept"), &ada, Some(json!({}))).await;
        assert_eq!((accepted.status.as_u16(), accepted.body["created_login"].as_bool()), (200, Some(false)), "{:#}", accepted.body);
        let in_beta = accepted.headers.get_all("set-cookie").filter_map(|v| v.to_str().ok()).find_map(|c| {
            c.strip_prefix("keyward_session=").map(|rest| rest.split(';').next().unwrap_or_default().to_owned())
        }).unwrap();
        assert_eq!(app.with_session(Method::GET, "/v1/keys", &in_beta, None).await.status.as_u16(), 200);
        // A password in the body is for new logins only.
        let third = token_of(&app.invite(&app.owner_of("Gamma", "owner@gamma.test").await, "ada@beta.test", "member").await);
        let refused = app.with_session(Method::POST, &format!("/v1/invitations/{third}/accept"), &ada, Some(json!({"password": PASSWORD}))).await;
        refused.assert_error(400, "validation_failed");
        let logout = app.with_session(Method::POST, "/v1/auth/logout", &ada, None).await;
        assert_eq!(logout.status.as_u16(), 204, "a login of no account logs out: {:#}", logout.body);
    }
}
