//! One module per page (or family of pages).

pub mod account_keys;
pub mod audit;
pub mod invitation;
pub mod key;
pub mod key_edit;
pub mod keys;
pub mod keyspaces;
pub mod overview;
pub mod password_reset;
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
        // A filter the use case refuses (a control character, say): what it said.
        ErrorCode::ValidationFailed => layout::error_page(error.status, "Unknown filter", &error.message),
        _ => layout::error_page(error.status, "This page cannot be shown right now", &error.message),
    }
}

/// A field of a filter form as a filter: trimmed, and none when empty (the form's "Any").
pub fn filled(field: Option<&String>) -> Option<&str> {
    field.map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// A new password and its repetition: the field `name` (the policy's lengths, its error
/// slot) and `repeat_password`, which the page's script checks is the same.
pub fn new_password_fields(name: &str, label: &str) -> maud::Markup {
    use keyward_domain::password::{MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS};
    maud::html! {
        label for=(name) { (label) }
        input id=(name) type="password" name=(name) autocomplete="new-password" required
            minlength=(MIN_PASSWORD_CHARS) maxlength=(MAX_PASSWORD_BYTES) aria-describedby={ (name) "-error" };
        p.field-error id={ (name) "-error" } data-error-for=(name) {}
        label for="repeat_password" { (label) ", again" }
        input #repeat_password type="password" autocomplete="new-password" required data-same-as=(name);
    }
}

/// The query string of a filter form's `fields` (empty ones left out) on the page `cursor`
/// starts.
pub fn query_at(fields: &[(&str, Option<&str>)], cursor: &str) -> String {
    let pairs: Vec<(&str, &str)> =
        fields.iter().filter_map(|(k, v)| v.map(|v| (*k, v))).chain([("cursor", cursor)]).collect();
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

/// A redirect a browser follows with a GET.
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish()
}

/// Any other path under the dashboard.
pub async fn not_found() -> HttpResponse {
    layout::error_page(StatusCode::NOT_FOUND, "No such page", "Nothing lives at this address.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_link_keeps_the_filled_filters_and_encodes_them() {
        let q = query_at(&[("owner_id", Some("cust 1&x=y")), ("status", None)], "key_abc");
        assert_eq!(q, "owner_id=cust+1%26x%3Dy&cursor=key_abc");
        assert_eq!(filled(Some(&"  ".to_owned())), None);
        assert_eq!(filled(Some(&" live ".to_owned())), Some("live"));
    }
}
