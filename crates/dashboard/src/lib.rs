//! Keyward's web dashboard: the pages people manage keys with, served by the same binary
//! as the API, under `/dashboard`.
//!
//! Pages are rendered on the server (maud) from the same use cases and DTOs as the API,
//! for the person the session cookie names. Every change — creating, revoking, rotating,
//! signing in — is made by the page's own script through the `/v1` API, as JSON with the
//! session cookie: one implementation of every rule, the API's CSRF defences, rate limits,
//! step-up and audit trail unchanged. The script and the stylesheet are embedded in the
//! binary; nothing is fetched from elsewhere, and no page carries inline script or style,
//! so the Content-Security-Policy needs no `unsafe-inline`.
//!
//! Architecture invariant: this crate holds no business rule and writes nothing; it reads
//! through `KeyService`/`PeopleService` what the signed-in person may see, and renders it.

// A page and what a browser gets instead (a redirect, an error page) are both responses,
// made once per request: boxing the error would buy nothing.
#![allow(clippy::result_large_err)]

mod assets;
mod chart;
mod format;
mod headers;
mod layout;
mod pages;
mod viewer;

use actix_web::{HttpResponse, middleware::from_fn, web};
use keyward_domain::{Store, ratelimit::Admission};

/// Where the dashboard lives.
pub const BASE: &str = "/dashboard";

/// Registers the dashboard's pages and assets (for `keyward_http::app_with`), and `GET /`,
/// which sends a browser to them.
pub fn configure<S: Store, L: Admission>(config: &mut web::ServiceConfig) {
    config.service(web::resource("/").route(web::get().to(|| async { pages::see_other(BASE) }))).service(
        web::scope(BASE)
            .wrap(from_fn(headers::secure))
            .service(web::resource("").route(web::get().to(pages::overview::page::<S, L>)))
            .service(web::resource("/sign-in").route(web::get().to(pages::sign_in::page)))
            .service(web::resource("/password").route(web::get().to(pages::sign_in::password_page)))
            .service(web::resource("/keys").route(web::get().to(pages::keys::list::<S, L>)))
            .service(web::resource("/keys/new").route(web::get().to(pages::keys::new::<S, L>)))
            .service(web::resource("/keys/{id}").route(web::get().to(pages::key::page::<S, L>)))
            .service(web::resource("/keys/{id}/edit").route(web::get().to(pages::key_edit::page::<S, L>)))
            .service(web::resource("/keyspaces").route(web::get().to(pages::keyspaces::list::<S, L>)))
            .service(web::resource("/keyspaces/{id}").route(web::get().to(pages::keyspaces::page::<S, L>)))
            .service(web::resource("/account-keys").route(web::get().to(pages::account_keys::page::<S, L>)))
            .service(web::resource("/people").route(web::get().to(pages::people::page::<S, L>)))
            .service(web::resource("/audit").route(web::get().to(pages::audit::page::<S, L>)))
            .service(web::resource("/assets/{name}").route(web::get().to(asset)))
            .default_service(web::to(pages::not_found)),
    );
}

/// `GET /dashboard/assets/{name}`: an asset by its current name; any other name is 404 (a
/// page from before an upgrade reloads and gets the new names).
async fn asset(name: web::Path<String>) -> HttpResponse {
    match assets::response(&name) {
        Some(response) => response,
        None => pages::not_found().await,
    }
}
