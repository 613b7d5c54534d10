//! `GET /dashboard/keys/{id}`: one key — its attributes, its usage, its recent requests —
//! and what may be done to it: disable or enable, rotate, revoke (each through the API).

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use keyward_domain::{
    KeyId, KeyStatus, Store,
    ratelimit::Admission,
    scope::management,
    usage::{SUMMARY_DAYS, UsageSummary},
};
use keyward_http::{
    AppState,
    dto::{KeyResponse, UsageRecordResponse},
};
use maud::{Markup, html};

use super::{
    Rendered, either,
    keys::{field, scopes, show_once_panel, status_badge},
    refusal,
};
use crate::{
    BASE, chart,
    format::{count, json, maybe_moment, moment},
    layout::{self, Section},
    viewer::{Viewer, viewer},
};

/// Recent requests shown.
const RECENT: u32 = 20;

pub async fn page<S: Store, L: Admission>(
    state: web::Data<AppState<S, L>>,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    either(render(&state, &req, &id).await)
}

async fn render<S: Store, L: Admission>(state: &web::Data<AppState<S, L>>, req: &HttpRequest, id: &str) -> Rendered {
    let viewer = viewer(state, req).await.map_err(refusal)?;
    let no_such_key =
        || layout::error_page(StatusCode::NOT_FOUND, "No such key", "Your account has no key by this id.");
    let id: KeyId = id.parse().map_err(|_| no_such_key())?;
    let key = state.service.get_key(&viewer.principal, id).await.map_err(refusal)?;
    let usage = state.service.usage_summary(&viewer.principal, id).await.map_err(refusal)?;
    let recent: Vec<UsageRecordResponse> = if viewer.may(management::USAGE_READ) {
        let entries =
            state.service.key_usage(&viewer.principal, id, (None, None), None, RECENT).await.map_err(refusal)?;
        entries.iter().map(|e| UsageRecordResponse::from(&e.record)).collect()
    } else {
        Vec::new()
    };
    let now = state.service.now();
    let key = KeyResponse::new(&key, now);
    let first_day = UsageSummary::first_of_last_days(now);
    let body = html! {
        p.crumbs { a href={ (BASE) "/keys" } { "Keys" } " / " }
        div.heading {
            h1 { (key.name) " " (status_badge(key.status)) }
        }
        (actions(&viewer, &key))
        (show_once_panel("The new key", None))
        div.columns {
            section.card aria-labelledby="attributes" {
                h2 #attributes { "Attributes" }
                (attributes(&key))
            }
            section.card aria-labelledby="usage" {
                h2 #usage { "Usage" }
                div.tiles {
                    div.tile { span.figure #requests-today { (count(usage.requests_today)) } span.caption { "requests today" } }
                    div.tile { span.figure #requests-month { (count(usage.requests_this_month)) } span.caption { "this month" } }
                    div.tile { span.figure { (count(key.usage_count)) } span.caption { "in all" } }
                }
                (chart::days(&format!("Requests per day, last {SUMMARY_DAYS} days (UTC)"), first_day, &usage.last_days))
            }
        }
        section.card aria-labelledby="recent" {
            h2 #recent { "Recent requests" }
            @if recent.is_empty() {
                p.muted { "None recorded." }
            } @else {
                div.table-scroll {
                    table {
                        thead { tr {
                            th scope="col" { "When" } th scope="col" { "Outcome" } th scope="col" { "Endpoint" }
                            th scope="col" { "Status" } th scope="col" class="number" { "Time (ms)" } th scope="col" { "IP" }
                        } }
                        tbody {
                            @for record in &recent {
                                tr {
                                    td { (moment(record.ts)) }
                                    td { @if let Some(outcome) = record.outcome { code { (outcome) } } @else { "management call" } }
                                    td { (record.method.as_deref().unwrap_or("")) " " (record.endpoint.as_deref().unwrap_or("—")) }
                                    td { (record.status_code.map(|s| s.to_string()).unwrap_or_else(|| "—".into())) }
                                    td.number { (record.response_time_ms.map(|ms| format!("{ms:.3}")).unwrap_or_else(|| "—".into())) }
                                    td { (record.ip.as_deref().unwrap_or("—")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&key.name, &viewer, Section::Keys, body))
}

fn attributes(key: &KeyResponse) -> Markup {
    html! {
        dl.attributes {
            dt { "Key" } dd { code { (key.key_prefix) } }
            dt { "Id" } dd { code { (key.id) } }
            @if let Some(description) = &key.description { dt { "Description" } dd { (description) } }
            dt { "Environment" } dd { (key.environment) }
            dt { "Tier" } dd { (key.tier) }
            dt { "Scopes" } dd { (scopes(&key.scopes)) }
            dt { "Owner" } dd { (key.owner_id.as_deref().unwrap_or("—")) }
            dt { "Rate limits" } dd {
                @if key.rate_limits.is_empty() { span.muted { "the tier's" } }
                @for window in &key.rate_limits { (count(window.limit)) " per " (count(window.period_seconds)) " s" br; }
            }
            dt { "Quota" } dd {
                @match &key.quota { Some(quota) => { (quota.remaining) " uses left" } None => span.muted { "none" } }
            }
            dt { "Allowed IPs" } dd {
                @if key.ip_allowlist.is_empty() { span.muted { "any" } }
                @for entry in &key.ip_allowlist { code { (entry) } " " }
            }
            dt { "Expires" } dd #expires-at { (maybe_moment(key.expires_at, "never")) }
            dt { "Last used" } dd { (maybe_moment(key.last_used_at, "never")) }
            dt { "Created" } dd { (moment(key.created_at)) " by " code { (key.created_by) } }
            @if let Some(revoked_at) = key.revoked_at { dt { "Revoked" } dd { (moment(revoked_at)) } }
            // Where a report said it was found: shown as text, never as a link (a report is
            // anyone's word, and its URL anyone's choice).
            @if let Some(leaked_at) = key.leaked_at {
                dt { "Found in public" }
                dd #leaked { (moment(leaked_at)) @if let Some(source) = &key.leak_source { ", " code { (source) } } }
            }
            @if let Some(from) = key.rotated_from { dt { "Replaces" } dd { a href={ (BASE) "/keys/" (from) } { code { (from) } } } }
            @if let Some(to) = key.rotated_to { dt { "Replaced by" } dd { a href={ (BASE) "/keys/" (to) } { code { (to) } } } }
            @if !key.metadata.is_empty() {
                dt { "Metadata" } dd { pre { code { (json(&key.metadata)) } } }
            }
        }
    }
}

/// Disable or enable, rotate, revoke — or why this person cannot.
fn actions(viewer: &Viewer, key: &KeyResponse) -> Markup {
    if key.status == KeyStatus::Revoked {
        return html! { p.muted { "A revoked key cannot be used or changed; it stays listed for its history." } };
    }
    if !viewer.may(management::KEYS_WRITE) {
        return html! {
            p.forbidden { "Your role (" (viewer.role) ") can read this key but not change it; an owner or admin can." }
        };
    }
    let path = format!("/v1/keys/{}", key.id);
    let revoke_question = format!(
        "Revoke “{}”? Every request made with it is refused from now on, on every instance. This cannot be undone.",
        key.name
    );
    html! {
        section.card.actions-card aria-label="Actions" {
            div.actions {
                a.button.secondary href={ (BASE) "/keys/" (key.id) "/edit" } { "Edit" }
                @if key.is_active {
                    button.secondary type="button" data-api={ "PATCH " (path) } data-body="{\"is_active\":false}" data-then="reload" { "Disable" }
                } @else {
                    button.secondary type="button" data-api={ "PATCH " (path) } data-body="{\"is_active\":true}" data-then="reload" { "Enable" }
                }
                button.danger type="button" data-api={ "DELETE " (path) } data-confirm=(revoke_question) data-then="reload" { "Revoke" }
            }
            p.error role="alert" data-error {}
            details.rotate {
                summary { "Rotate" }
                form data-api={ "POST " (path) "/rotate" } data-then="show-once" {
                    (field("grace_period_seconds", "The old key keeps working for (seconds, up to 604800)", html! {
                        input #grace_period_seconds type="number" name="grace_period_seconds" data-type="int" min="0" max="604800"
                            value="3600" aria-describedby="grace_period_seconds-error";
                    }))
                    p.error role="alert" data-error {}
                    div.actions { button type="submit" { "Rotate now" } }
                }
            }
        }
    }
}
