//! `GET /dashboard/keyspaces`: the account's keyspaces and the form that creates one
//! (`POST /v1/keyspaces`); `GET /dashboard/keyspaces/{id}`: one keyspace, its edit form
//! (`PATCH`) and its deletion, which the API allows only when it holds no active key.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use keyward_domain::{IpPolicy, KeyspaceId, Store, Tier, ratelimit::Admission, scope::management};
use keyward_http::{AppState, dto::KeyspaceResponse};
use maud::{Markup, html};

use super::{
    Rendered, either,
    keys::{field, scopes},
    refusal,
};
use crate::{
    BASE,
    format::moment,
    layout::{self, Section},
    viewer::{Viewer, viewer},
};

pub async fn list<S: Store, L: Admission>(state: web::Data<AppState<S, L>>, req: HttpRequest) -> HttpResponse {
    either(render_list(&state, &req).await)
}

async fn render_list<S: Store, L: Admission>(state: &web::Data<AppState<S, L>>, req: &HttpRequest) -> Rendered {
    let viewer = viewer(state, req).await.map_err(refusal)?;
    let keyspaces = state.service.list_keyspaces(&viewer.principal).await.map_err(refusal)?;
    let keyspaces: Vec<KeyspaceResponse> = keyspaces.iter().map(Into::into).collect();
    let body = html! {
        h1 { "Keyspaces" }
        p.muted { "A keyspace groups keys under their own prefix, with default tier and scopes, and may limit \
                   which scopes its keys can hold." }
        div.table-scroll {
            table.keyspaces {
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Prefix" } th scope="col" { "Default tier" }
                    th scope="col" { "Default scopes" } th scope="col" { "Allowed scopes" } th scope="col" { "IP policy" }
                    th scope="col" { "If leaked" } th scope="col" { "Created" }
                } }
                tbody {
                    @for keyspace in &keyspaces {
                        tr {
                            td { a href={ (BASE) "/keyspaces/" (keyspace.id) } { (keyspace.name) } }
                            td { code { (keyspace.prefix) } }
                            td { (keyspace.default_tier) }
                            td.scopes { (scopes(&keyspace.default_scopes)) }
                            td.scopes {
                                @match &keyspace.allowed_scopes { Some(allowed) => (scopes(allowed)), None => span.muted { "any" } }
                            }
                            td { (keyspace.ip_policy) }
                            td.leak-policy {
                                @match keyspace.leak_policy {
                                    Some(policy) => (policy),
                                    None => span.muted { "revoke live, notify test" },
                                }
                            }
                            td { (moment(keyspace.created_at)) }
                        }
                    }
                }
            }
        }
        @if writes(&viewer) {
            form.card.wide #create-keyspace data-api="POST /v1/keyspaces" data-then="reload" {
                h2 { "Create a keyspace" }
                (fields(None))
                p.error role="alert" data-error {}
                div.actions { button type="submit" { "Create keyspace" } }
            }
        } @else {
            p.forbidden { "Your role (" (viewer.role) ") can read keyspaces but not create them." }
        }
    };
    Ok(layout::page("Keyspaces", &viewer, Section::Keyspaces, body))
}

pub async fn page<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    either(render(&state, &req, &id).await)
}

async fn render<S: Store, L: Admission>(state: &web::Data<AppState<S, L>>, req: &HttpRequest, id: &str) -> Rendered {
    let viewer = viewer(state, req).await.map_err(refusal)?;
    let not_found = || layout::error_page(StatusCode::NOT_FOUND, "Not found", "Your account has no such keyspace.");
    let id: KeyspaceId = id.parse().map_err(|_| not_found())?;
    let keyspace = state.service.get_keyspace(&viewer.principal, id).await.map_err(refusal)?;
    let keyspace = KeyspaceResponse::from(&keyspace);
    let routes = state.service.routes(&viewer.principal, id).await.map_err(refusal)?;
    let routes = keyward_http::gateway::RouteTableResponse::from(&*routes);
    let path = format!("/v1/keyspaces/{}", keyspace.id);
    let body = html! {
        p.crumbs { a href={ (BASE) "/keyspaces" } { "Keyspaces" } " / " }
        h1 { (keyspace.name) " " code.muted { (keyspace.prefix) } }
        @if writes(&viewer) {
            form.card.wide #edit-keyspace data-api={ "PATCH " (path) } data-then="reload" {
                h2 { "Edit" }
                (fields(Some(&keyspace)))
                p.error role="alert" data-error {}
                div.actions { button type="submit" { "Save" } }
            }
            section.card.actions-card aria-label="Delete" {
                p { "A keyspace can be deleted once it holds no active key." }
                div.actions {
                    button.danger type="button" data-api={ "DELETE " (path) }
                        data-confirm={ "Delete the keyspace “" (keyspace.name) "”? This cannot be undone." }
                        data-then={ "go:" (BASE) "/keyspaces" } { "Delete keyspace" }
                }
                p.error role="alert" data-error {}
            }
        } @else {
            p.forbidden { "Your role (" (viewer.role) ") can read this keyspace but not change it." }
        }
        (gateway_routes(&routes, &path, writes(&viewer)))
        p { a href={ (BASE) "/keys?keyspace_id=" (keyspace.id) } { "This keyspace's keys" } }
    };
    Ok(layout::page(&keyspace.name, &viewer, Section::Keyspaces, body))
}

fn writes(viewer: &Viewer) -> bool {
    viewer.may(management::KEYSPACES_WRITE)
}

/// The attributes of a keyspace as form fields, filled with `current`'s when editing. An
/// emptied list is sent as empty (default scopes) or as no catalogue (allowed scopes).
fn fields(current: Option<&KeyspaceResponse>) -> Markup {
    let list = |scopes: &[String]| scopes.join(", ");
    let tier = current.map(|k| k.default_tier);
    let policy = current.map(|k| k.ip_policy);
    html! {
        (field("name", "Name", html! {
            input #name type="text" name="name" required maxlength="100" value=[current.map(|k| &k.name)]
                aria-describedby="name-error";
        }))
        div.row {
            (field("prefix", "Prefix (2–20 of a–z, 0–9, _)", html! {
                input #prefix type="text" name="prefix" minlength="2" maxlength="20" pattern="[a-z0-9_]{2,20}"
                    value=[current.map(|k| &k.prefix)] placeholder="kw" aria-describedby="prefix-error";
            }))
            (field("default_tier", "Default tier", html! {
                select #default_tier name="default_tier" aria-describedby="default_tier-error" {
                    @if current.is_none() { option value="" { "the plan's" } }
                    @for option in [Tier::Free, Tier::Basic, Tier::Pro, Tier::Enterprise] {
                        option value=(option) selected[tier == Some(option)] { (option) }
                    }
                }
            }))
            (field("ip_policy", "IP policy", html! {
                select #ip_policy name="ip_policy" aria-describedby="ip_policy-error" {
                    @for option in [IpPolicy::Open, IpPolicy::AllowlistRequired] {
                        option value=(option) selected[policy == Some(option)] { (option) }
                    }
                }
            }))
        }
        (field("default_scopes", "Default scopes (comma or line separated)", html! {
            textarea #default_scopes name="default_scopes" data-type="list" data-empty="[]" rows="2"
                aria-describedby="default_scopes-error" { (current.map(|k| list(&k.default_scopes)).unwrap_or_default()) }
        }))
        (field("allowed_scopes", "Allowed scopes (empty: any)", html! {
            textarea #allowed_scopes name="allowed_scopes" data-type="list" data-empty="null" rows="2"
                aria-describedby="allowed_scopes-error" {
                (current.and_then(|k| k.allowed_scopes.as_deref()).map(list).unwrap_or_default())
            }
        }))
    }
}

/// The keyspace's route rules for gateways (docs/gateways.md): an editor, one rule a line,
/// or for a reader the table.
fn gateway_routes(routes: &keyward_http::gateway::RouteTableResponse, path: &str, writes: bool) -> Markup {
    use keyward_http::gateway::RouteDefaultName;
    let methods = |m: &[String]| if m.is_empty() { "*".to_owned() } else { m.join(",") };
    let lines: Vec<String> = routes
        .rules
        .iter()
        .map(|r| format!("{} {} {}", methods(&r.methods), r.path, r.scopes.join(" ")).trim_end().to_owned())
        .collect();
    html! {
        section.card.wide #gateway-routes aria-label="Gateway routes" {
            h2 { "Gateway routes" }
            p.muted {
                "What a key of this keyspace needs at a gateway that asks "
                code { "/v1/forward-auth/" (routes.keyspace_id) } ": the first rule whose methods and path match \
                 decides. One rule a line — methods (comma-separated, " code { "*" } " for all), a path pattern (" code { "*" }
                " is one segment, a final " code { "**" } " any number), then the scopes a key needs (none: any key)."
            }
            @if writes {
                form #edit-routes data-api={ "PUT " (path) "/routes" } data-then="reload" {
                    div.row {
                        (field("route_default", "Paths no rule matches", html! {
                            select #route_default name="default" aria-describedby="route_default-error" {
                                option value="any_key" selected[routes.default == RouteDefaultName::AnyKey] { "any valid key passes" }
                                option value="deny" selected[routes.default == RouteDefaultName::Deny] { "denied" }
                            }
                        }))
                        (field("query_parameter", "Key in a query parameter (empty: headers only)", html! {
                            input #query_parameter type="text" name="query_parameter" maxlength="64" data-empty="null"
                                value=[routes.query_parameter.as_deref()] placeholder="api_key" aria-describedby="query_parameter-error";
                        }))
                    }
                    (field("rules", "Rules", html! {
                        textarea #rules name="rules" data-type="routes" data-empty="[]" rows="6"
                            placeholder="GET,HEAD /v1/servers/** servers:read" aria-describedby="rules-error" { (lines.join("\n")) }
                    }))
                    p.error role="alert" data-error {}
                    div.actions { button type="submit" { "Save routes" } }
                }
            } @else {
                table.routes {
                    thead { tr { th scope="col" { "Methods" } th scope="col" { "Path" } th scope="col" { "Scopes" } } }
                    tbody {
                        @for rule in &routes.rules {
                            tr { td { (methods(&rule.methods)) } td { code { (rule.path) } } td.scopes { (scopes(&rule.scopes)) } }
                        }
                    }
                }
                p { "Paths no rule matches: " @if routes.default == RouteDefaultName::Deny { "denied" } @else { "any valid key passes" } "." }
            }
        }
    }
}
