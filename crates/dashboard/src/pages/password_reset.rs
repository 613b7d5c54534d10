//! Password reset by mail (issue #29): `GET /dashboard/password-reset` asks for a link
//! (`POST /v1/auth/password-reset`), and `GET /password-reset/{token}`, the page the mailed
//! link opens, chooses the new password (`POST /v1/auth/password-reset/{token}`).
//!
//! Neither page says whether an address has a login: asking answers the same for every
//! address, and a link that does not work is only found out by using it.

use actix_web::{HttpResponse, web};
use keyward_domain::password::MIN_PASSWORD_CHARS;
use maud::html;

use crate::{BASE, layout};

/// `GET /dashboard/password-reset`.
pub async fn ask() -> HttpResponse {
    let body = html! {
        section.card.narrow #password-reset {
            h1 { "Reset your password" }
            form data-api="POST /v1/auth/password-reset" data-then="done" {
                p { "We mail a link to your address. It works once, for an hour." }
                label for="email" { "Email" }
                input #email type="email" name="email" autocomplete="username" required autofocus maxlength="254";
                p.error role="alert" data-error {}
                div.actions { button type="submit" { "Mail me a link" } }
            }
            div data-done-panel hidden tabindex="-1" role="status" {
                p { "If a login has this address, a link to reset its password is on its way. "
                    "Nothing arrives? Check the address, or ask whoever runs Keyward whether it sends mail." }
                p { a href={ (BASE) "/sign-in" } { "Back to signing in" } }
            }
        }
    };
    layout::public_page("Reset your password", body)
}

/// `GET /password-reset/{token}`: the token is only sent to the API, by the page's script
/// from its own address, never put in the page's links.
pub async fn choose(token: web::Path<String>) -> HttpResponse {
    // Anything but a link's token is no link (and nothing to echo).
    let Some(token) = keyward_domain::people_service::LinkToken::parse(&token) else { return dead_link() };
    let token = token.expose_secret();
    let body = html! {
        section.card.narrow #choose-password {
            h1 { "Choose a new password" }
            form data-api={ "POST /v1/auth/password-reset/" (token) } data-then="done"
                data-not-found="This link does not work: it was used, or it expired. Ask for a new one." {
                p { (MIN_PASSWORD_CHARS) " characters at least. Every session of your login ends, on every device." }
                input type="email" autocomplete="username" hidden;
                (super::new_password_fields("password", "New password"))
                p.error role="alert" data-error {}
                div.actions { button type="submit" { "Set my password" } }
                p.small { a href={ (BASE) "/password-reset" } { "Ask for a new link" } }
            }
            div data-done-panel hidden tabindex="-1" role="status" {
                p { "Your password is set, and every session of your login has ended." }
                p { a.button href={ (BASE) "/sign-in" } { "Sign in" } }
            }
        }
    };
    layout::public_page("Choose a new password", body)
}

fn dead_link() -> HttpResponse {
    layout::error_page(
        actix_web::http::StatusCode::NOT_FOUND,
        "This link does not work",
        "It was used, or it expired. Ask for a new one on the sign-in page.",
    )
}
