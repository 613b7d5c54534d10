//! `GET /invitations/{token}`: the page an invitation's link opens (issue #29), and
//! `GET /dashboard/welcome`, where a login that belongs to no account lands.
//!
//! What the page offers follows from the invitation and who is signed in: an address with
//! no login chooses a password (which creates the login and accepts); an address with a
//! login signs in as it, then accepts; someone signed in as another login is told so. Each
//! action goes through the API like every other page's (`POST /v1/invitations/{token}/accept`,
//! `DELETE /v1/invitations/{token}`, `POST /v1/auth/login`).

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use keyward_domain::{Store, password::MIN_PASSWORD_CHARS, people_service::LinkToken, ratelimit::Admission};
use keyward_http::AppState;
use maud::{Markup, html};

use super::refusal;
use crate::{BASE, format::moment, layout};

fn dead_link() -> HttpResponse {
    layout::error_page(
        StatusCode::NOT_FOUND,
        "This invitation link does not work",
        "It was used, declined or withdrawn, or it expired. Ask whoever invited you for a new one.",
    )
}

pub async fn page<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    token: web::Path<String>,
) -> HttpResponse {
    let Some(token) = LinkToken::parse(&token) else { return dead_link() };
    if let Err(refused) = keyward_http::session::limit_ip(&state, &req).await {
        return refusal(refused);
    }
    let view = match state.people.describe_invitation(&token, &keyward_http::extract::request_context(&req)).await {
        Ok(view) => view,
        Err(keyward_domain::error::PeopleError::Manage(keyward_domain::error::ManageError::NotFound)) => {
            return dead_link();
        }
        Err(e) => return refusal(e),
    };
    // Who is signed in, if anyone (a dead session is nobody).
    let signed_in = match state.cookies.token_of(&req) {
        Some(session) => state.people.login_view(&session).await.ok().map(|(_, user, _)| user.email),
        None => None,
    };
    let invited = view.invitation.email.to_string();
    let api = |method: &str, tail: &str| format!("{method} /v1/invitations/{}{tail}", token.expose_secret());
    let body = html! {
        section.card.narrow #invitation {
            h1 { "Join " (view.account_name) }
            p {
                @if let Some(inviter) = &view.inviter_email { (inviter) } @else { "Someone" }
                " invited " strong { (invited) } " to " strong { (view.account_name) } " as " (view.invitation.role) "."
            }
            p.muted.small { "The link works once, until " (moment(view.invitation.expires_at)) "." }
            @if !view.has_login {
                (choose_password(&invited, &api("POST", "/accept")))
            } @else if signed_in.as_ref().is_some_and(|email| email.as_str() == invited) {
                div.actions {
                    button type="button" data-api=(api("POST", "/accept")) data-then={ "go:" (BASE) } { "Accept" }
                }
                p.error role="alert" data-error {}
            } @else if let Some(other) = &signed_in {
                p.warning { "You are signed in as " strong { (other) } ". This invitation is for " strong { (invited) }
                    ": sign out, then sign in as " (invited) " to accept it." }
                div.actions {
                    button.secondary type="button" data-api="POST /v1/auth/logout" data-then="reload" { "Sign out" }
                }
                p.error role="alert" data-error {}
            } @else {
                (sign_in(&invited))
            }
            div.actions {
                button.secondary.small type="button" data-api=(api("DELETE", ""))
                    data-confirm={ "Decline the invitation to " (view.account_name) "? The link stops working." }
                    data-then="reload" { "Decline" }
            }
        }
    };
    layout::public_page(&format!("Join {}", view.account_name), body)
}

/// An address without a login: the password of the login accepting creates.
fn choose_password(email: &str, accept: &str) -> Markup {
    html! {
        form #accept data-api=(accept) data-then={ "go:" (BASE) } {
            p { "Choose a password for " strong { (email) } ": " (MIN_PASSWORD_CHARS) " characters at least." }
            // For password managers: whose password this is (no name: not sent).
            input type="email" autocomplete="username" value=(email) hidden;
            (super::new_password_fields("password", "Password"))
            p.error role="alert" data-error {}
            div.actions { button type="submit" { "Accept and create my login" } }
        }
    }
}

/// An address with a login, nobody signed in: sign in as it, and the page offers to accept.
fn sign_in(email: &str) -> Markup {
    html! {
        form #sign-in data-api="POST /v1/auth/login" data-then="reload" {
            p { strong { (email) } " has a login: sign in to accept." }
            input type="hidden" name="email" value=(email);
            input type="email" autocomplete="username" value=(email) hidden;
            label for="password" { "Password" }
            input #password type="password" name="password" autocomplete="current-password" required;
            p.error role="alert" data-error {}
            div.actions { button type="submit" { "Sign in" } }
        }
    }
}

/// `GET /dashboard/welcome`: a login that belongs to no account — what waits for its address.
pub async fn welcome<S: Store, L: Admission>(state: web::Data<AppState<S, L>>, req: HttpRequest) -> HttpResponse {
    let Some(session) = state.cookies.token_of(&req) else { return super::see_other(&format!("{BASE}/sign-in")) };
    if let Err(refused) = keyward_http::session::limit_ip(&state, &req).await {
        return refusal(refused);
    }
    let (user, waiting) = match state.people.login_view(&session).await {
        Ok((_, _, Some(_))) => return super::see_other(BASE),
        Ok((_, user, None)) => match state.people.invitations_for_login(&session).await {
            Ok(waiting) => (user, waiting),
            Err(e) => return refusal(e),
        },
        Err(_) => return super::see_other(&format!("{BASE}/sign-in")),
    };
    let body = html! {
        section.card.narrow #welcome {
            h1 { "You belong to no account yet" }
            p { "Signed in as " strong { (user.email) } "." }
            @if waiting.is_empty() {
                p { "No invitation waits for this address. Ask an owner or admin of an account to invite you." }
            } @else {
                p { "These invitations wait for you; open the link that came with each by mail to accept it." }
                ul.invitations {
                    @for (invitation, name) in &waiting {
                        li { strong { (name) } ", as " (invitation.role) ", until " (moment(invitation.expires_at)) }
                    }
                }
            }
            div.actions {
                button.secondary type="button" data-api="POST /v1/auth/logout" data-then={ "go:" (BASE) "/sign-in" } { "Sign out" }
            }
            p.error role="alert" data-error {}
        }
    };
    layout::public_page("Welcome", body)
}
