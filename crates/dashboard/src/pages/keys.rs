//! `GET /dashboard/keys`: the service keys, filtered and paged as `GET /v1/keys` pages them;
//! `GET /dashboard/keys/new`: the form that creates one through `POST /v1/keys`, and the
//! panel that shows its plaintext once.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use keyward_domain::{
    Environment, KeyId, KeyKind, KeyStatus, KeyspaceId, Store, Tier,
    ports::{KeyFilter, PageRequest},
    ratelimit::Admission,
    scope::management,
};
use keyward_http::{AppState, cursor, dto::KeyResponse};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Rendered, either, filled, query_at, refusal};
use crate::{
    BASE,
    format::{count, maybe_moment},
    layout::{self, Section},
    viewer::{Viewer, viewer},
};

/// Keys per page.
const PAGE: u32 = 25;

/// The filters of the list, as the filter form sends them: an empty field is no filter.
#[derive(Debug, Default, Deserialize)]
struct Filters {
    keyspace_id: Option<String>,
    status: Option<String>,
    environment: Option<String>,
    owner_id: Option<String>,
    cursor: Option<String>,
}

impl Filters {
    /// The filter and the page, or the error page of a value that is not one.
    fn parse(&self) -> Result<(KeyFilter, Option<KeyId>), HttpResponse> {
        fn parsed<T: std::str::FromStr>(raw: Option<&str>, what: &str) -> Result<Option<T>, HttpResponse> {
            raw.map(|v| v.parse::<T>())
                .transpose()
                .map_err(|_| layout::error_page(StatusCode::BAD_REQUEST, "Unknown filter", &format!("No such {what}.")))
        }
        let filter = KeyFilter {
            kind: KeyKind::Service,
            keyspace_id: parsed::<KeyspaceId>(filled(self.keyspace_id.as_ref()), "keyspace")?,
            environment: parsed::<Environment>(filled(self.environment.as_ref()), "environment")?,
            status: parsed::<KeyStatus>(filled(self.status.as_ref()), "status")?,
            owner_id: filled(self.owner_id.as_ref()).map(str::to_owned),
        };
        let before = filled(self.cursor.as_ref()).map(cursor::decode::<KeyId>).transpose().map_err(refusal)?;
        Ok((filter, before))
    }

    /// The query string of these filters on the page `cursor` starts.
    fn with_cursor(&self, cursor: &str) -> String {
        query_at(
            &[
                ("keyspace_id", filled(self.keyspace_id.as_ref())),
                ("status", filled(self.status.as_ref())),
                ("environment", filled(self.environment.as_ref())),
                ("owner_id", filled(self.owner_id.as_ref())),
            ],
            cursor,
        )
    }
}

pub async fn list<S: Store, L: Admission>(state: web::Data<AppState<S, L>>, req: HttpRequest) -> HttpResponse {
    either(render_list(&state, &req).await)
}

async fn render_list<S: Store, L: Admission>(state: &web::Data<AppState<S, L>>, req: &HttpRequest) -> Rendered {
    let viewer = viewer(state, req).await.map_err(refusal)?;
    let filters: Filters = serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    let (filter, before) = filters.parse()?;
    let keyspaces = state.service.list_keyspaces(&viewer.principal).await.map_err(refusal)?;
    let names: HashMap<KeyspaceId, &str> = keyspaces.iter().map(|k| (k.id, k.name.as_str())).collect();
    let page = state
        .service
        .list_keys(&viewer.principal, &filter, PageRequest { limit: PAGE, before })
        .await
        .map_err(refusal)?;
    let now = state.service.now();
    let keys: Vec<KeyResponse> = page.keys.iter().map(|k| KeyResponse::new(k, now)).collect();
    let next = page.has_more.then(|| page.keys.last().map(|k| cursor::encode(k.id))).flatten();
    let selected = |field: &Option<String>, value: &str| filled(field.as_ref()) == Some(value);
    let body = html! {
        div.heading {
            h1 { "Keys" }
            (create_button(&viewer))
        }
        form.filters method="get" action={ (BASE) "/keys" } aria-label="Filter keys" {
            div.field {
                label for="f-keyspace" { "Keyspace" }
                select #f-keyspace name="keyspace_id" {
                    option value="" { "Any" }
                    @for keyspace in &keyspaces {
                        @let id = keyspace.id.to_string();
                        option value=(id) selected[selected(&filters.keyspace_id, &id)] { (keyspace.name) }
                    }
                }
            }
            div.field {
                label for="f-status" { "Status" }
                select #f-status name="status" {
                    option value="" { "Any" }
                    @for status in ["active", "inactive", "expired", "revoked"] {
                        option value=(status) selected[selected(&filters.status, status)] { (status) }
                    }
                }
            }
            div.field {
                label for="f-environment" { "Environment" }
                select #f-environment name="environment" {
                    option value="" { "Any" }
                    @for environment in ["live", "test"] {
                        option value=(environment) selected[selected(&filters.environment, environment)] { (environment) }
                    }
                }
            }
            div.field {
                label for="f-owner" { "Owner" }
                input #f-owner type="text" name="owner_id" value=[filled(filters.owner_id.as_ref())] placeholder="owner id";
            }
            div.field.submit { button type="submit" { "Filter" } }
        }
        p.muted #key-total { (count(page.total)) @if page.total == 1 { " key" } @else { " keys" } @if before.is_some() { " · " a href={ (BASE) "/keys?" (filters.with_cursor("")) } { "first page" } } }
        @if keys.is_empty() {
            p.empty { "No key matches." }
        } @else {
            div.table-scroll {
                table.keys {
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Key" } th scope="col" { "Keyspace" }
                        th scope="col" { "Env" } th scope="col" { "Status" } th scope="col" { "Scopes" }
                        th scope="col" { "Tier" } th scope="col" { "Owner" } th scope="col" { "Last used" }
                        th scope="col" class="number" { "Uses" } th scope="col" { "Expires" }
                    } }
                    tbody {
                        @for key in &keys {
                            tr data-key-id=(key.id) {
                                td { a href={ (BASE) "/keys/" (key.id) } { (key.name) } }
                                td { code { (key.key_prefix) } }
                                td { (key.keyspace_id.and_then(|id| names.get(&id).copied()).unwrap_or("—")) }
                                td { (key.environment) }
                                td { (status_badge(key.status)) }
                                td.scopes { (scopes(&key.scopes)) }
                                td { (key.tier) }
                                td { (key.owner_id.as_deref().unwrap_or("—")) }
                                td { (maybe_moment(key.last_used_at, "never")) }
                                td.number { (count(key.usage_count)) }
                                td { (maybe_moment(key.expires_at, "never")) }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(next) = next {
            nav.pager aria-label="Pages" { a rel="next" href={ (BASE) "/keys?" (filters.with_cursor(&next)) } { "Next page →" } }
        }
    };
    Ok(layout::page("Keys", &viewer, Section::Keys, body))
}

/// "Create key", or why this person cannot.
fn create_button(viewer: &Viewer) -> Markup {
    if viewer.may(management::KEYS_WRITE) {
        html! { a.button href={ (BASE) "/keys/new" } { "Create key" } }
    } else {
        html! { p.forbidden { "Your role (" (viewer.role) ") can read keys but not create them; an owner or admin can change that." } }
    }
}

pub fn status_badge(status: KeyStatus) -> Markup {
    html! { span class={ "badge " (status) } { (status) } }
}

pub fn scopes(scopes: &[String]) -> Markup {
    html! {
        @if scopes.is_empty() { span.muted { "none" } }
        @for scope in scopes { code.scope { (scope) } " " }
    }
}

pub async fn new<S: Store, L: Admission>(state: web::Data<AppState<S, L>>, req: HttpRequest) -> HttpResponse {
    either(render_new(&state, &req).await)
}

async fn render_new<S: Store, L: Admission>(state: &web::Data<AppState<S, L>>, req: &HttpRequest) -> Rendered {
    let viewer = viewer(state, req).await.map_err(refusal)?;
    if !viewer.may(management::KEYS_WRITE) {
        let body = html! { h1 { "Create a key" } (create_button(&viewer)) };
        return Ok(layout::page("Create a key", &viewer, Section::Keys, body));
    }
    let keyspaces = state.service.list_keyspaces(&viewer.principal).await.map_err(refusal)?;
    let body = html! {
        h1 { "Create a key" }
        form.card.wide #create-key data-api="POST /v1/keys" data-then="show-once" {
            (field("name", "Name", html! {
                input #name type="text" name="name" required maxlength="100" aria-describedby="name-error";
            }))
            (field("description", "Description (optional)", html! {
                textarea #description name="description" maxlength="1000" rows="2" aria-describedby="description-error" {}
            }))
            div.row {
                (field("keyspace_id", "Keyspace", html! {
                    select #keyspace_id name="keyspace_id" aria-describedby="keyspace_id-error" {
                        @for keyspace in &keyspaces {
                            option value=(keyspace.id) { (keyspace.name) " (" (keyspace.prefix) ")" }
                        }
                    }
                }))
                (field("environment", "Environment", html! {
                    select #environment name="environment" aria-describedby="environment-error" {
                        option value="live" { "live" } option value="test" { "test" }
                    }
                }))
                (field("tier", "Tier", html! {
                    select #tier name="tier" aria-describedby="tier-error" {
                        option value="" { "the keyspace's default" }
                        @for tier in [Tier::Free, Tier::Basic, Tier::Pro, Tier::Enterprise] {
                            option value=(tier) { (tier) }
                        }
                    }
                }))
            }
            (field("scopes", "Scopes (comma or line separated; empty: the keyspace's defaults)", html! {
                textarea #scopes name="scopes" data-type="list" rows="2" placeholder="servers:read, servers:write"
                    aria-describedby="scopes-error" {}
            }))
            div.row {
                (field("owner_id", "Owner (optional)", html! {
                    input #owner_id type="text" name="owner_id" maxlength="255" placeholder="your customer's id" aria-describedby="owner_id-error";
                }))
                (field("expires_at", "Expires (optional, UTC)", html! {
                    input #expires_at type="datetime-local" name="expires_at" data-type="utc" aria-describedby="expires_at-error";
                }))
            }
            fieldset {
                legend { "Limits (optional)" }
                div.row {
                    (field("rate_limits.0.limit", "Requests", html! {
                        input id="rate_limits.0.limit" type="number" min="1" max="1000000000" name="rate_limits.0.limit" data-type="int"
                            aria-describedby="rate_limits.0.limit-error";
                    }))
                    (field("rate_limits.0.period_seconds", "per (seconds)", html! {
                        input id="rate_limits.0.period_seconds" type="number" min="1" max="31622400" name="rate_limits.0.period_seconds"
                            data-type="int" aria-describedby="rate_limits.0.period_seconds-error";
                    }))
                    (field("quota.remaining", "Quota (total uses)", html! {
                        input id="quota.remaining" type="number" min="0" name="quota.remaining" data-type="int" aria-describedby="quota.remaining-error";
                    }))
                }
                input type="hidden" name="rate_limits.0.name" value="custom" data-with="rate_limits.0.limit";
            }
            (field("ip_allowlist", "Allowed IPs (optional: addresses or CIDR ranges, comma or line separated)", html! {
                textarea #ip_allowlist name="ip_allowlist" data-type="list" rows="2" placeholder="203.0.113.0/24"
                    aria-describedby="ip_allowlist-error" {}
            }))
            (field("metadata", "Metadata (optional JSON object)", html! {
                textarea #metadata name="metadata" data-type="json" rows="2" placeholder="{\"plan\": \"pro\"}"
                    aria-describedby="metadata-error" {}
            }))
            p.error role="alert" data-error {}
            div.actions {
                button type="submit" { "Create key" }
                a.button.secondary href={ (BASE) "/keys" } { "Cancel" }
            }
        }
        (show_once_panel("The key", None))
    };
    Ok(layout::page("Create a key", &viewer, Section::Keys, body))
}

/// A labelled control with the place its validation message goes.
pub fn field(name: &str, label: &str, control: Markup) -> Markup {
    html! {
        div.field {
            label for=(name) { (label) }
            (control)
            p.field-error id={ (name) "-error" } data-error-for=(name) {}
        }
    }
}

/// Where a new key's plaintext appears, once: filled by the script from the API's answer,
/// emptied when the person leaves for `after` (by default, the new key's page).
pub fn show_once_panel(what: &str, after: Option<&str>) -> Markup {
    html! {
        section.card.show-once #show-once hidden aria-live="polite" tabindex="-1" data-after=[after] {
            h2 { (what) " — copy it now" }
            p.warning { strong { "It will not be shown again." } " Keyward keeps only its hash." }
            div.secret {
                code #plaintext data-plaintext {}
                button type="button" data-copy="#plaintext" { "Copy" }
            }
            p.muted data-copied hidden { "Copied." }
            p.muted data-old-key hidden {}
            div.actions { a.button #done href="#" data-done { "I have stored it" } }
        }
    }
}
