//! `GET /dashboard`: the account at a glance — the numbers of `GET /v1/stats`, verifications
//! by outcome, and the most used keys.

use actix_web::{HttpRequest, HttpResponse, web};
use keyward_domain::{Store, error::ManageError, ratelimit::Admission};
use keyward_http::AppState;
use maud::html;

use super::{Rendered, either, refusal};
use crate::{
    BASE, chart,
    format::count,
    layout::{self, Section},
    viewer::viewer,
};

pub async fn page<S: Store, L: Admission>(state: web::Data<AppState<S, L>>, req: HttpRequest) -> HttpResponse {
    either(render(&state, &req).await)
}

async fn render<S: Store, L: Admission>(state: &web::Data<AppState<S, L>>, req: &HttpRequest) -> Rendered {
    let viewer = viewer(state, req).await.map_err(refusal)?;
    let (counts, stats) = state.service.stats(&viewer.principal).await.map_err(refusal)?;
    // Names for the most used keys: a handful of lookups (a key revoked and purged since is
    // listed by its id).
    let mut top = Vec::with_capacity(stats.top_keys.len());
    for used in &stats.top_keys {
        let key = match state.service.get_key(&viewer.principal, used.key_id).await {
            Ok(key) => Some(key),
            Err(ManageError::NotFound) => None,
            Err(other) => return Err(refusal(other)),
        };
        top.push((used, key));
    }
    let mut by_code: Vec<(String, u64)> = stats.by_code.iter().map(|(code, n)| (code.clone(), *n)).collect();
    by_code.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let body = html! {
        h1 { "Overview" }
        section.tiles aria-label="Numbers" {
            div.tile { span.figure #active-keys { (count(counts.active)) } span.caption { "active keys" } }
            div.tile { span.figure #revoked-keys { (count(counts.revoked)) } span.caption { "revoked keys" } }
            div.tile { span.figure #verifications-today { (count(stats.verifications_today)) } span.caption { "verifications today" } }
            div.tile {
                span.figure #success-rate { (format!("{:.1}", stats.success_rate * 100.0)) "%" }
                span.caption { "success rate" }
            }
            div.tile {
                span.figure #avg-response-time {
                    @match stats.avg_response_time_ms { Some(ms) => { (format!("{ms:.2}")) " ms" } None => "—" }
                }
                span.caption { "average handling time of a verification" }
            }
        }
        div.columns {
            section.card { (chart::bars("Verifications by outcome", &by_code)) }
            section.card {
                h2 { "Most used keys" }
                @if top.is_empty() {
                    p.muted { "No key has been used yet." }
                } @else {
                    ol.top-keys {
                        @for (used, key) in &top {
                            li {
                                a href={ (BASE) "/keys/" (used.key_id) } {
                                    @match key { Some(key) => (key.name), None => code { (used.key_id) } }
                                }
                                @if let Some(key) = key { " " code.muted { (key.key_prefix) } }
                                " " span.muted { (count(used.requests)) " requests" }
                            }
                        }
                    }
                    p.muted.small { "Over the last 30 days, today included (UTC)." }
                }
            }
        }
    };
    Ok(layout::page("Overview", &viewer, Section::Overview, body))
}
