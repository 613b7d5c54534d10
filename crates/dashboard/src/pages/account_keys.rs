//! `GET /dashboard/account-keys`: the management keys people mint for automation, and the
//! form that mints one through `POST /v1/account/keys` — behind the step-up prompt, which
//! the page's script shows when the API asks for the password again.

use actix_web::{HttpRequest, HttpResponse, web};
use keyward_domain::{KeyStatus, Store, ratelimit::Admission, scope::management};
use keyward_http::{AppState, dto::KeyResponse};
use maud::{Markup, html};

use super::{
    Rendered, either,
    keys::{field, scopes, show_once_panel, status_badge},
    refusal,
};
use crate::{
    BASE,
    format::{maybe_moment, moment},
    layout::{self, Section},
    viewer::{Viewer, viewer},
};

pub async fn page<S: Store, L: Admission>(state: web::Data<AppState<S, L>>, req: HttpRequest) -> HttpResponse {
    either(render(&state, &req).await)
}

async fn render<S: Store, L: Admission>(state: &web::Data<AppState<S, L>>, req: &HttpRequest) -> Rendered {
    let viewer = viewer(state, req).await.map_err(refusal)?;
    if !viewer.role.manages_account() {
        let body = html! {
            h1 { "Account keys" }
            p.forbidden { "Account keys are managed by owners and admins; your role is " (viewer.role) "." }
        };
        return Ok(layout::page("Account keys", &viewer, Section::AccountKeys, body));
    }
    let keys = state.people.list_account_keys(&viewer.principal).await.map_err(refusal)?;
    let now = state.service.now();
    let keys: Vec<KeyResponse> = keys.iter().map(|k| KeyResponse::new(k, now)).collect();
    let allowed = state.service.config().plans.limits(viewer.account.plan).account_keys_allowed;
    let body = html! {
        h1 { "Account keys" }
        p.muted { "Keys for your own automation: they call the management API with the scopes you give them, \
                   at most those of your role. Minting one asks for your password again." }
        @if keys.is_empty() {
            p.empty { "No account keys yet." }
        } @else {
            div.table-scroll {
                table.account-keys {
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Key" } th scope="col" { "Status" }
                        th scope="col" { "Scopes" } th scope="col" { "Created" } th scope="col" { "Last used" }
                        th scope="col" { "Expires" } th scope="col" { span.visually-hidden { "Actions" } }
                    } }
                    tbody {
                        @for key in &keys {
                            tr data-key-id=(key.id) {
                                td { (key.name) }
                                td { code { (key.key_prefix) } }
                                td { (status_badge(key.status)) }
                                td.scopes { (scopes(&key.scopes)) }
                                td { (moment(key.created_at)) }
                                td { (maybe_moment(key.last_used_at, "never")) }
                                td { (maybe_moment(key.expires_at, "never")) }
                                td { (revoke_button(key)) }
                            }
                        }
                    }
                }
            }
            p.error role="alert" data-error {}
        }
        @if allowed {
            (create_form(&viewer))
        } @else {
            p.forbidden { "The " (viewer.account.plan) " plan does not include account keys; the pro and enterprise plans do." }
        }
        (show_once_panel("The account key", Some(&format!("{BASE}/account-keys"))))
    };
    Ok(layout::page("Account keys", &viewer, Section::AccountKeys, body))
}

fn revoke_button(key: &KeyResponse) -> Markup {
    if key.status == KeyStatus::Revoked {
        return html! {};
    }
    let question = format!("Revoke the account key “{}”? Automation using it stops working at once.", key.name);
    html! {
        button.danger.small type="button" data-api={ "DELETE /v1/account/keys/" (key.id) } data-confirm=(question)
            data-then="reload" aria-label={ "Revoke " (key.name) } { "Revoke" }
    }
}

fn create_form(viewer: &Viewer) -> Markup {
    let role_scopes = viewer.role.scopes();
    html! {
        form.card.wide #create-account-key data-api="POST /v1/account/keys" data-then="show-once" {
            h2 { "Mint an account key" }
            (field("name", "Name", html! {
                input #name type="text" name="name" required maxlength="100" placeholder="ci-deploys" aria-describedby="name-error";
            }))
            fieldset aria-describedby="scopes-error" {
                legend { "Scopes" }
                @for scope in management::ALL {
                    @let id = format!("scope-{}", scope.replace(':', "-"));
                    @let granted = role_scopes.grants_str(scope);
                    div.check {
                        input id=(id) type="checkbox" name="scopes" value=(scope) data-type="each" disabled[!granted];
                        label for=(id) { code { (scope) } @if !granted { " " span.muted { "(beyond your role)" } } }
                    }
                }
                p.field-error #scopes-error data-error-for="scopes" {}
            }
            (field("description", "Description (optional)", html! {
                textarea #description name="description" maxlength="1000" rows="2" aria-describedby="description-error" {}
            }))
            (field("expires_at", "Expires (optional, UTC)", html! {
                input #expires_at type="datetime-local" name="expires_at" data-type="utc" aria-describedby="expires_at-error";
            }))
            p.error role="alert" data-error {}
            div.actions { button type="submit" { "Mint key" } }
        }
    }
}
