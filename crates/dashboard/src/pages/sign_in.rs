//! Signing in, and the password change a one-time password requires. Both forms post to
//! the API (`POST /v1/auth/login`, `POST /v1/account/password`); the page's script shows
//! the API's answer — wrong password, the login throttle's wait — beside the form.

use actix_web::HttpResponse;
use keyward_domain::password::{MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS};
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
                label for="new_password" { "New password" }
                input #new_password type="password" name="new_password" autocomplete="new-password" required
                    minlength=(MIN_PASSWORD_CHARS) maxlength=(MAX_PASSWORD_BYTES) aria-describedby="new_password-error";
                p.field-error #new_password-error data-error-for="new_password" {}
                label for="repeat_password" { "New password, again" }
                input #repeat_password type="password" autocomplete="new-password" required data-same-as="new_password";
                p.error role="alert" data-error {}
                div.actions { button type="submit" { "Save and continue" } }
            }
        }
    };
    layout::public_page("Choose your password", body)
}
