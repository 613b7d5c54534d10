//! `GET /dashboard/keys/{id}/edit`: a key's attributes as a form, filled with what they are,
//! saved through `PATCH /v1/keys/{id}`. A field emptied on purpose clears the attribute
//! (no expiry, no quota, no allowlist, the tier's limits).

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use keyward_domain::{KeyId, KeyStatus, Store, Tier, quota::RefillInterval, ratelimit::Admission, scope::management};
use keyward_http::{AppState, dto::KeyResponse};
use maud::html;
use time::macros::format_description;

use super::{Rendered, either, keys::field, refusal};
use crate::{
    BASE,
    format::json,
    layout::{self, Section},
    viewer::viewer,
};

pub async fn page<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    either(render(&state, &req, &id).await)
}

async fn render<S: Store, L: Admission>(state: &web::Data<AppState<S, L>>, req: &HttpRequest, id: &str) -> Rendered {
    let viewer = viewer(state, req).await.map_err(refusal)?;
    let not_found = || layout::error_page(StatusCode::NOT_FOUND, "Not found", "Your account has no such key.");
    let id: KeyId = id.parse().map_err(|_| not_found())?;
    let key = state.service.get_key(&viewer.principal, id).await.map_err(refusal)?;
    let key = KeyResponse::new(&key, state.service.now());
    let back = format!("{BASE}/keys/{}", key.id);
    if !viewer.may(management::KEYS_WRITE) || key.status == KeyStatus::Revoked {
        let body = html! {
            h1 { "Edit " (key.name) }
            p.forbidden {
                @if key.status == KeyStatus::Revoked { "A revoked key cannot be changed." }
                @else { "Your role (" (viewer.role) ") can read this key but not change it." }
            }
            p { a href=(back) { "Back to the key" } }
        };
        return Ok(layout::page(&key.name, &viewer, Section::Keys, body));
    }
    let expires = key.expires_at.and_then(|at| {
        at.to_offset(time::UtcOffset::UTC).format(format_description!("[year]-[month]-[day]T[hour]:[minute]")).ok()
    });
    let refill = key.quota.as_ref().and_then(|q| q.refill);
    let windows = key.rate_limits.iter().map(Some).chain([None]);
    let metadata = if key.metadata.is_empty() { String::new() } else { json(&key.metadata) };
    let body = html! {
        p.crumbs { a href={ (BASE) "/keys" } { "Keys" } " / " a href=(back) { (key.name) } " / " }
        h1 { "Edit " (key.name) }
        form.card.wide #edit-key data-api={ "PATCH /v1/keys/" (key.id) } data-then={ "go:" (back) } {
            (field("name", "Name", html! {
                input #name type="text" name="name" required maxlength="100" value=(key.name) aria-describedby="name-error";
            }))
            (field("description", "Description", html! {
                textarea #description name="description" data-empty="null" maxlength="1000" rows="2"
                    aria-describedby="description-error" { (key.description.as_deref().unwrap_or_default()) }
            }))
            (field("scopes", "Scopes (comma or line separated)", html! {
                textarea #scopes name="scopes" data-type="list" data-empty="[]" rows="2" aria-describedby="scopes-error" {
                    (key.scopes.join(", "))
                }
            }))
            div.row {
                (field("tier", "Tier", html! {
                    select #tier name="tier" aria-describedby="tier-error" {
                        @for tier in [Tier::Free, Tier::Basic, Tier::Pro, Tier::Enterprise] {
                            option value=(tier) selected[tier == key.tier] { (tier) }
                        }
                    }
                }))
                (field("owner_id", "Owner", html! {
                    input #owner_id type="text" name="owner_id" data-empty="null" maxlength="255"
                        value=[key.owner_id.as_deref()] aria-describedby="owner_id-error";
                }))
                (field("expires_at", "Expires (UTC; empty: never)", html! {
                    input #expires_at type="datetime-local" name="expires_at" data-type="utc" data-empty="null"
                        value=[expires.as_deref()] aria-describedby="expires_at-error";
                }))
            }
            fieldset {
                legend { "Rate limits (empty: the tier's)" }
                // Sent first, so that the windows below fill it; with none filled it clears them.
                input type="hidden" name="rate_limits" value="" data-empty="[]";
                @for (i, window) in windows.enumerate() {
                    div.row {
                        @let limit = format!("rate_limits.{i}.limit");
                        @let period = format!("rate_limits.{i}.period_seconds");
                        (field(&limit, "Requests", html! {
                            input id=(limit) type="number" min="1" max="1000000000" name=(limit) data-type="int"
                                value=[window.map(|w| w.limit)] aria-describedby={ (limit) "-error" };
                        }))
                        (field(&period, "per (seconds)", html! {
                            input id=(period) type="number" min="1" max="31622400" name=(period) data-type="int"
                                value=[window.map(|w| w.period_seconds)] aria-describedby={ (period) "-error" };
                        }))
                        input type="hidden" name={ "rate_limits." (i) ".name" } data-with=(limit)
                            value=(window.map_or_else(|| format!("window_{}", i + 1), |w| w.name.clone()));
                    }
                }
            }
            fieldset {
                legend { "Quota (empty: none)" }
                input type="hidden" name="quota" value="" data-empty="null";
                div.row {
                    (field("quota.remaining", "Uses left", html! {
                        input id="quota.remaining" type="number" min="0" name="quota.remaining" data-type="int"
                            value=[key.quota.as_ref().map(|q| q.remaining)] aria-describedby="quota.remaining-error";
                    }))
                    (field("quota.refill.amount", "Refilled to", html! {
                        input id="quota.refill.amount" type="number" min="1" name="quota.refill.amount" data-type="int"
                            data-with="quota.remaining" value=[refill.map(|r| r.amount)] aria-describedby="quota.refill.amount-error";
                    }))
                    (field("quota.refill.interval", "every", html! {
                        select id="quota.refill.interval" name="quota.refill.interval" data-with="quota.refill.amount" {
                            @for (interval, label) in [(RefillInterval::Day, "day"), (RefillInterval::Month, "month")] {
                                option value=(label) selected[refill.is_some_and(|r| r.interval == interval)] { (label) }
                            }
                        }
                    }))
                }
            }
            (field("ip_allowlist", "Allowed IPs (addresses, CIDR ranges or host names; empty: any)", html! {
                textarea #ip_allowlist name="ip_allowlist" data-type="list" data-empty="[]" rows="2"
                    aria-describedby="ip_allowlist-error" { (key.ip_allowlist.join(", ")) }
            }))
            (field("metadata", "Metadata (a JSON object)", html! {
                textarea #metadata name="metadata" data-type="json" rows="3" aria-describedby="metadata-error" { (metadata) }
            }))
            p.error role="alert" data-error {}
            div.actions {
                button type="submit" { "Save" }
                a.button.secondary href=(back) { "Cancel" }
            }
        }
    };
    Ok(layout::page(&format!("Edit {}", key.name), &viewer, Section::Keys, body))
}
