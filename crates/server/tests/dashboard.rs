//! The dashboard's pages as an attacker meets them, over plain HTTP against the built
//! binary on PostgreSQL: without a session, with another account's session, with a removed
//! member's, with an API key instead of a cookie, with malformed ids and filters, and with
//! a key whose name is markup. (What a person does with them is `browser.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::time::Duration;

use keyward_store_pg::testing::TestDatabase;
use serde_json::json;

mod common;

use common::{Server, account_with_owner};

const PASSWORD: &str = "correct horse battery staple";

/// A page as a browser gets it, redirects not followed.
struct Page {
    status: u16,
    location: Option<String>,
    csp: Option<String>,
    frame: Option<String>,
    body: String,
}

fn page(server: &Server, path: &str, headers: &[(&str, &str)]) -> Page {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut request = agent.get(format!("{}{path}", server.base));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.call().unwrap();
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Page {
        status: response.status().as_u16(),
        location: header("location"),
        csp: header("content-security-policy"),
        frame: header("x-frame-options"),
        body: response.body_mut().read_to_string().unwrap_or_default(),
    }
}

/// A session cookie (`name=value`) for `email`.
fn sign_in(server: &Server, email: &str) -> String {
    let (status, cookie, body) =
        server.try_request("POST", "/v1/auth/login", &[], Some(json!({"email": email, "password": PASSWORD}))).unwrap();
    assert_eq!(status, 200, "{body}");
    cookie.unwrap().split(';').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_show_each_person_their_own_account_and_nothing_else() {
    let db = TestDatabase::new().await;
    let key_a = account_with_owner(db.url(), "Acme", "owner@acme.io", PASSWORD);
    account_with_owner(db.url(), "Umbrella", "owner@umbrella.io", PASSWORD);
    let server = Server::start(&[("DATABASE_URL", db.url())]);
    let (_, created) =
        server.call("POST", "/v1/keys", &key_a, Some(json!({"name": "<script>alert('owned')</script>"})));
    let key_id = created["id"].as_str().unwrap().to_owned();
    let plaintext = created["key"].as_str().unwrap().to_owned();
    let (_, keyspaces) = server.call("GET", "/v1/keyspaces", &key_a, None);
    let keyspace_id = keyspaces["data"][0]["id"].as_str().unwrap().to_owned();
    let key_page = format!("/dashboard/keys/{key_id}");
    let edit_page = format!("/dashboard/keys/{key_id}/edit");
    let keyspace_page = format!("/dashboard/keyspaces/{keyspace_id}");
    let pages = [
        "/dashboard",
        "/dashboard/keys",
        "/dashboard/keys/new",
        &key_page,
        &edit_page,
        "/dashboard/keyspaces",
        &keyspace_page,
        "/dashboard/account-keys",
        "/dashboard/people",
        "/dashboard/audit",
    ];

    // Anonymous: every page leads to signing in, and carries the security headers.
    for path in pages {
        let answer = page(&server, path, &[]);
        assert_eq!((answer.status, answer.location.as_deref()), (303, Some("/dashboard/sign-in")), "{path}");
        assert!(answer.csp.as_deref().is_some_and(|csp| csp.contains("frame-ancestors 'none'")), "{path}");
        assert_eq!(answer.frame.as_deref(), Some("DENY"), "{path}");
    }
    let head = ureq::head(format!("{}/dashboard/sign-in", server.base)).call().unwrap();
    assert_eq!(head.status().as_u16(), 200, "a page answers HEAD");
    let root = page(&server, "/", &[]);
    assert_eq!((root.status, root.location.as_deref()), (303, Some("/dashboard")));
    // An API key is not a session: the key's holder is sent to sign in like anyone.
    let keyed = page(&server, "/dashboard/keys", &[("authorization", &format!("Bearer {key_a}"))]);
    assert_eq!((keyed.status, keyed.location.as_deref()), (303, Some("/dashboard/sign-in")));
    // A made-up session cookie is no session.
    let forged = page(&server, "/dashboard/keys", &[("cookie", "keyward_session=forged")]);
    assert_eq!((forged.status, forged.location.as_deref()), (303, Some("/dashboard/sign-in")));

    // Acme's owner sees the key, its name escaped, never its plaintext.
    let acme = sign_in(&server, "owner@acme.io");
    let cookie = [("cookie", acme.as_str())];
    for path in pages {
        let answer = page(&server, path, &cookie);
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        assert!(!answer.body.contains("<script>alert"), "{path} renders markup from a key's name");
        assert!(!answer.body.contains(&plaintext), "{path} shows a plaintext key");
    }
    // A filter with a byte no stored value has (PostgreSQL's text cannot hold U+0000) is a
    // 400 page, never a database error (issue #29).
    for path in ["/dashboard/keys?owner_id=a%00b", "/dashboard/audit?actor_id=a%00b", "/dashboard/audit?action=x%01"] {
        let answer = page(&server, path, &cookie);
        assert_eq!(answer.status, 400, "{path}: {}", answer.body);
        assert!(answer.body.contains("control characters"), "{path}: {}", answer.body);
    }
    let listed = page(&server, "/dashboard/keys", &cookie).body;
    assert!(
        listed.contains("&lt;script&gt;alert('owned')&lt;/script&gt;")
            || listed.contains("&lt;script&gt;alert(&#39;owned&#39;)")
    );
    // With the key as well, the credentials are ambiguous, as in the API.
    let both = page(&server, "/dashboard", &[("cookie", acme.as_str()), ("authorization", &format!("Bearer {key_a}"))]);
    assert_eq!(both.status, 400);
    assert!(both.body.contains("Sign in to use the dashboard"), "{}", both.body);

    // Umbrella's owner: Acme's key does not exist for them, and their lists are empty.
    let umbrella = sign_in(&server, "owner@umbrella.io");
    let theirs = [("cookie", umbrella.as_str())];
    for path in [&key_page, &edit_page, &keyspace_page] {
        let foreign = page(&server, path, &theirs);
        assert_eq!(foreign.status, 404, "{path}");
        assert!(!foreign.body.contains("script&gt;alert") && !foreign.body.contains(&key_id), "{}", foreign.body);
    }
    let listed = page(&server, "/dashboard/keys", &theirs).body;
    assert!(listed.contains("0 keys") && !listed.contains(&key_id));

    // Umbrella invites Acme's owner, who has a login: the invitation is listed on their People
    // page, with no way to accept it there (that takes the link's token); Umbrella's owner
    // sees it among the invitations Umbrella sent, and none of Acme's people.
    let as_umbrella = [("cookie", umbrella.as_str())];
    let (status, _, _) = server
        .try_request("POST", "/v1/account/verify-password", &as_umbrella, Some(json!({"password": PASSWORD})))
        .unwrap();
    assert_eq!(status, 200);
    let (status, _, invited) = server
        .try_request(
            "POST",
            "/v1/account/users",
            &as_umbrella,
            Some(json!({"email": "owner@acme.io", "role": "admin"})),
        )
        .unwrap();
    assert_eq!((status, invited["status"].as_str()), (202, Some("invited")), "{invited}");
    let people = page(&server, "/dashboard/people", &cookie).body;
    assert!(people.contains("Invitations to you") && people.contains("<strong>Umbrella</strong>"), "{people}");
    let token = invited["accept_url"].as_str().unwrap().rsplit('/').next().unwrap();
    assert!(!people.contains("/accept") && !people.contains(token), "no answer without the link: {people}");
    assert!(!people.contains("Invitations waiting for an answer"), "Acme sent none: {people}");
    let theirs_people = page(&server, "/dashboard/people", &theirs).body;
    let (members, sent) = theirs_people.split_once("Invitations waiting for an answer").expect("Umbrella's invitation");
    assert!(!members.contains("owner@acme.io") && !members.contains("Invitations to you"), "{members}");
    assert!(
        sent.contains("owner@acme.io") && sent.contains("data-api=\"DELETE /v1/account/invitations/inv_"),
        "{sent}"
    );

    // Malformed input gets a page saying so, never a 500.
    for (path, status) in [
        ("/dashboard/keys/not-a-key-id", 404),
        ("/dashboard/keys?status=stolen", 400),
        ("/dashboard/keys?keyspace_id=ks_%00", 400),
        ("/dashboard/keys?cursor=%FF%FE", 400),
        ("/dashboard/assets/app-000000000000.js", 404),
        ("/dashboard/no-such-page", 404),
    ] {
        let answer = page(&server, path, &cookie);
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
        assert!(answer.body.starts_with("<!DOCTYPE html>"), "{path} answers a page: {}", answer.body);
    }

    // A viewer may read, and is told why they cannot create.
    let (status, _, body) = server
        .try_request(
            "POST",
            "/v1/account/verify-password",
            &[("cookie", acme.as_str())],
            Some(json!({"password": PASSWORD})),
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, _, added) = server
        .try_request(
            "POST",
            "/v1/account/users",
            &[("cookie", acme.as_str())],
            Some(json!({"email": "viewer@acme.io", "role": "viewer"})),
        )
        .unwrap();
    assert_eq!(status, 202, "{added}");
    // The viewer accepts the link with a password of their own, which signs them in.
    let token = added["accept_url"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    let (status, viewer_cookie, accepted) = server
        .try_request("POST", &format!("/v1/invitations/{token}/accept"), &[], Some(json!({"password": PASSWORD})))
        .unwrap();
    assert_eq!(status, 200, "{accepted}");
    let viewer_cookie = viewer_cookie.unwrap().split(';').next().unwrap().to_owned();
    let viewing = [("cookie", viewer_cookie.as_str())];
    let new_key = page(&server, "/dashboard/keys/new", &viewing).body;
    assert!(new_key.contains("can read keys but not create them") && !new_key.contains("data-api=\"POST /v1/keys\""));
    let key_page = page(&server, &format!("/dashboard/keys/{key_id}"), &viewing).body;
    assert!(key_page.contains("can read this key but not change it") && !key_page.contains("Revoke"));

    // Removed, the viewer's session ends with their membership: the pages send them away.
    let (_, _, members) = server.try_request("GET", "/v1/account/users", &[("cookie", acme.as_str())], None).unwrap();
    let viewer_id = members["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "viewer@acme.io")
        .and_then(|m| m["user_id"].as_str().or(m["id"].as_str()))
        .unwrap()
        .to_owned();
    let (status, _, _) = server
        .try_request("DELETE", &format!("/v1/account/users/{viewer_id}"), &[("cookie", acme.as_str())], None)
        .unwrap();
    assert_eq!(status, 204);
    let gone = page(&server, &format!("/dashboard/keys/{key_id}"), &viewing);
    assert_eq!((gone.status, gone.location.as_deref()), (303, Some("/dashboard/sign-in")));
}
