//! `GET /dashboard`: the account at a glance — the numbers of `GET /v1/stats`, verifications
//! by outcome, and the most used keys.

use actix_web::{HttpRequest, HttpResponse, web};
use keyward_domain::{
    KeyKind, Store,
    ports::{KeyFilter, PageRequest},
    ratelimit::Admission,
};
use keyward_http::AppState;
use maud::html;

use super::{Rendered, either, refusal};
use crate::{
    BASE, chart,
    format::count,
    layout::{self, Section},
    viewer::viewer,
};

/// How many keys "top keys" shows, and how many of the newest keys it picks them from.
const TOP_KEYS: usize = 5;
const TOP_KEYS_FROM: u32 = 100;

pub async fn page<S: Store, L: Admission>(state: web::Data<AppState<S, L>>, req: HttpRequest) -> HttpResponse {
    either(render(&state, &req).await)
}

async fn render<S: Store, L: Admission>(state: &web::Data<AppState<S, L>>, req: &HttpRequest) -> Rendered {
    let viewer = viewer(state, req).await.map_err(refusal)?;
    let (counts, stats) = state.service.stats(&viewer.principal).await.map_err(refusal)?;
    let filter =
        KeyFilter { kind: KeyKind::Service, keyspace_id: None, environment: None, status: None, owner_id: None };
    let newest = state
        .service
        .list_keys(&viewer.principal, &filter, PageRequest { limit: TOP_KEYS_FROM, before: None })
        .await
        .map_err(refusal)?;
    let mut top: Vec<_> = newest.keys.iter().filter(|k| k.usage_count > 0).collect();
    top.sort_by_key(|k| std::cmp::Reverse(k.usage_count));
    top.truncate(TOP_KEYS);
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
                        @for key in &top {
                            li {
                                a href={ (BASE) "/keys/" (key.id) } { (key.name) }
                                " " code.muted { (key.key_prefix) }
                                " " span.muted { (count(key.usage_count)) " uses" }
                            }
                        }
                    }
                    p.muted.small { "Among the " (TOP_KEYS_FROM) " newest keys." }
                }
            }
        }
    };
    Ok(layout::page("Overview", &viewer, Section::Overview, body))
}
