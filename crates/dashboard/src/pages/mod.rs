//! One module per page (or family of pages).

pub mod account_keys;
pub mod audit;
pub mod key;
pub mod key_edit;
pub mod keys;
pub mod keyspaces;
pub mod overview;
pub mod people;
pub mod sign_in;

use actix_web::{
    HttpResponse,
    http::{StatusCode, header},
};
use keyward_http::{ApiError, error::ErrorCode};

use crate::{BASE, layout};

/// A page, or what the browser gets instead (a redirect, an error page).
pub type Rendered = Result<HttpResponse, HttpResponse>;

/// The response of a [`Rendered`], whichever it is.
pub fn either(rendered: Rendered) -> HttpResponse {
    rendered.unwrap_or_else(|instead| instead)
}

/// What a browser gets for a refusal of the API's or a use case's: the sign-in page
/// without a session, the password page while a one-time password is unchanged, an error
/// page with the API's status otherwise.
pub fn refusal(error: impl Into<ApiError>) -> HttpResponse {
    let error = error.into();
    match error.code {
        ErrorCode::Unauthorized => see_other(&format!("{BASE}/sign-in")),
        ErrorCode::PasswordChangeRequired => see_other(&format!("{BASE}/password")),
        // An API key sent to a page (a browser sends only the cookie): pages are for people.
        ErrorCode::AmbiguousCredentials | ErrorCode::SessionRequired => layout::error_page(
            error.status,
            "Sign in to use the dashboard",
            "The dashboard works with your session; API keys are for the API.",
        ),
        ErrorCode::NotFound => {
            layout::error_page(error.status, "Not found", "Your account has nothing at this address.")
        }
        _ => layout::error_page(error.status, "This page cannot be shown right now", &error.message),
    }
}

/// A redirect a browser follows with a GET.
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish()
}

/// Any other path under the dashboard.
pub async fn not_found() -> HttpResponse {
    layout::error_page(StatusCode::NOT_FOUND, "No such page", "Nothing lives at this address.")
}
