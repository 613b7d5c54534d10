//! Signing in, and the password change a one-time password requires. Both forms post to
//! the API (`POST /v1/auth/login`, `POST /v1/account/password`); the page's script shows
//! the API's answer — wrong password, the login throttle's wait — beside the form.

use actix_web::HttpResponse;
use keyward_domain::password::MIN_PASSWORD_CHARS;
use maud::html;

use crate::{BASE, layout};

/// `GET /dashboard/sign-in`.
pub async fn page() -> HttpResponse {
    let body = html! {
        section.card.narrow {
            h1 { "Sign in" }
            form data-api="POST /v1/auth/login" data-then="signed-in" {
                label for="email" { "Email" }
                input #email type="email" name="email" autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                // Filled by the script when the person belongs to several accounts.
                fieldset #accounts hidden {
                    legend { "Which account?" }
                    div data-accounts {}
                }
                p.error role="alert" data-error {}
                div.actions { button type="submit" { "Sign in" } }
                p.small { a href={ (BASE) "/password-reset" } { "Forgot your password?" } }
            }
        }
    };
    layout::public_page("Sign in", body)
}

/// `GET /dashboard/password`: choosing one's own password. Signing in with a password
/// someone else chose (the printed one-time login, an admin's reset) leads here first.
pub async fn password_page() -> HttpResponse {
    let body = html! {
        section.card.narrow {
            h1 { "Choose your password" }
            p { "The password you were given works once. Choose your own: "
                (MIN_PASSWORD_CHARS) " characters at least. Your other sessions end." }
            form data-api="POST /v1/account/password" data-then={ "go:" (BASE) } {
                // For password managers: whose password this is (no name: not sent).
                input type="email" autocomplete="username" hidden;
                label for="current_password" { "Current password" }
                input #current_password type="password" name="current_password" autocomplete="current-password" required;
                (super::new_password_fields("new_password", "New password"))
                p.error role="alert" data-error {}
                div.actions { button type="submit" { "Save and continue" } }
            }
        }
    };
    layout::public_page("Choose your password", body)
}
