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

use actix_web::{FromRequest, Handler, HttpResponse, Responder, middleware::from_fn, web};
use keyward_domain::{Store, ratelimit::Admission};

/// Where the dashboard lives.
pub const BASE: &str = "/dashboard";

/// Registers the dashboard's pages and assets (for `keyward_http::app_with`), and `GET /`,
/// which sends a browser to them.
pub fn configure<S: Store, L: Admission>(config: &mut web::ServiceConfig) {
    config
        .service(web::resource("/").route(web::get().to(|| async { pages::see_other(BASE) })))
        // The page an invitation's link opens (`{public_url}/invitations/{token}`).
        .service(
            web::scope("/invitations")
                .wrap(from_fn(headers::secure))
                .service(page("/{token}", pages::invitation::page::<S, L>))
                .default_service(web::to(pages::not_found)),
        )
        // The page a password reset's link opens (`{public_url}/password-reset/{token}`).
        .service(
            web::scope("/password-reset")
                .wrap(from_fn(headers::secure))
                .service(page("/{token}", pages::password_reset::choose))
                .default_service(web::to(pages::not_found)),
        )
        .service(
            web::scope(BASE)
                .wrap(from_fn(headers::secure))
                .service(page("", pages::overview::page::<S, L>))
                .service(page("/sign-in", pages::sign_in::page))
                .service(page("/password", pages::sign_in::password_page))
                .service(page("/password-reset", pages::password_reset::ask))
                .service(page("/welcome", pages::invitation::welcome::<S, L>))
                .service(page("/keys", pages::keys::list::<S, L>))
                .service(page("/keys/new", pages::keys::new::<S, L>))
                .service(page("/keys/{id}", pages::key::page::<S, L>))
                .service(page("/keys/{id}/edit", pages::key_edit::page::<S, L>))
                .service(page("/keyspaces", pages::keyspaces::list::<S, L>))
                .service(page("/keyspaces/{id}", pages::keyspaces::page::<S, L>))
                .service(page("/account-keys", pages::account_keys::page::<S, L>))
                .service(page("/people", pages::people::page::<S, L>))
                .service(page("/audit", pages::audit::page::<S, L>))
                .service(page("/assets/{name}", asset))
                .default_service(web::to(pages::not_found)),
        );
}

/// A page at `path` (under the scope): GET, and HEAD for whoever checks it exists.
fn page<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: Handler<Args> + Clone,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path).route(web::get().to(handler.clone())).route(web::head().to(handler))
}

/// `GET /dashboard/assets/{name}`: an asset by its current name; any other name is 404 (a
/// page from before an upgrade reloads and gets the new names).
async fn asset(name: web::Path<String>) -> HttpResponse {
    match assets::response(&name) {
        Some(response) => response,
        None => pages::not_found().await,
    }
}
