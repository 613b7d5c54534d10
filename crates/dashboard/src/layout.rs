//! The page shell every page shares: head, top bar, navigation, the step-up dialog, and
//! the error page.

use actix_web::{HttpResponse, http::StatusCode};
use keyward_domain::people::STEP_UP_WINDOW;
use maud::{DOCTYPE, Markup, html};

use crate::{
    BASE,
    assets::{SCRIPT, STYLE},
    viewer::Viewer,
};

/// The sections of the navigation, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Keys,
    Keyspaces,
    AccountKeys,
    People,
    Audit,
}

const SECTIONS: &[(Section, &str, &str)] = &[
    (Section::Overview, "Overview", ""),
    (Section::Keys, "Keys", "/keys"),
    (Section::Keyspaces, "Keyspaces", "/keyspaces"),
    (Section::AccountKeys, "Account keys", "/account-keys"),
    (Section::People, "People", "/people"),
    (Section::Audit, "Audit log", "/audit"),
];

/// A page for a signed-in person.
pub fn page(title: &str, viewer: &Viewer, current: Section, body: Markup) -> HttpResponse {
    let bar = html! {
        nav aria-label="Main" {
            ul {
                @for (section, label, path) in SECTIONS {
                    li { a href={ (BASE) (path) } aria-current=[(*section == current).then_some("page")] { (label) } }
                }
            }
        }
        div.who {
            span { (viewer.email) " · " (viewer.account.name) " · " (viewer.role) }
            button.link type="button" data-sign-out { "Sign out" }
        }
    };
    html_response(StatusCode::OK, document(title, Some(bar), body))
}

/// A page for nobody in particular (signing in).
pub fn public_page(title: &str, body: Markup) -> HttpResponse {
    html_response(StatusCode::OK, document(title, None, body))
}

/// What a page that cannot be shown says instead, with the status the API would give.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    let body = html! {
        section.card.narrow {
            h1 { (title) }
            p { (message) }
            p { a href=(BASE) { "Back to the overview" } }
        }
    };
    html_response(status, document(title, None, body))
}

fn html_response(status: StatusCode, markup: Markup) -> HttpResponse {
    HttpResponse::build(status).content_type("text/html; charset=utf-8").body(markup.into_string())
}

fn document(title: &str, bar: Option<Markup>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · Keyward" }
                // No icon to fetch: the browser's request for /favicon.ico would only 404.
                link rel="icon" href="data:,";
                link rel="stylesheet" href=(STYLE.url());
                script src=(SCRIPT.url()) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href=(BASE) { "Keyward" }
                    @if let Some(bar) = bar { (bar) }
                }
                main #main tabindex="-1" { (body) }
                (step_up_dialog())
            }
        }
    }
}

/// Asked for when the API answers `step_up_required`: the password again, after which the
/// action that needed it runs on.
fn step_up_dialog() -> Markup {
    html! {
        dialog #step-up aria-labelledby="step-up-title" {
            form method="dialog" data-step-up {
                h2 #step-up-title { "Confirm your password" }
                // For password managers: whose password this is (not sent).
                input type="email" autocomplete="username" hidden;
                p { "This action needs your password again; it is not asked for again for " (STEP_UP_WINDOW.whole_minutes()) " minutes." }
                label for="step-up-password" { "Password" }
                input #step-up-password type="password" name="password" autocomplete="current-password" required;
                p.error role="alert" data-error {}
                div.actions {
                    button type="submit" value="confirm" { "Confirm" }
                    button.secondary type="button" data-cancel { "Cancel" }
                }
            }
        }
    }
}
