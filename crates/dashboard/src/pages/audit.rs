//! `GET /dashboard/audit`: the account's audit trail, newest first, filtered and paged as
//! `GET /v1/audit` pages it, each event's details a click away.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use keyward_domain::{Store, audit::AuditFilter, ratelimit::Admission};
use keyward_http::{AppState, cursor, cursor::AuditCursor, dto::AuditEventResponse};
use maud::html;
use serde::Deserialize;
use time::{PrimitiveDateTime, macros::format_description};

use super::{Rendered, either, filled, query_at, refusal};
use crate::{
    BASE,
    format::moment,
    layout::{self, Section},
    viewer::viewer,
};

/// Events per page.
const PAGE: u32 = 50;

/// The filters, as the filter form sends them: an empty field is no filter; times are
/// `datetime-local` values, read as UTC.
#[derive(Debug, Default, Deserialize)]
struct Filters {
    actor_id: Option<String>,
    action: Option<String>,
    result: Option<String>,
    resource_type: Option<String>,
    resource_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
}

impl Filters {
    fn parse(&self) -> Result<(AuditFilter, Option<AuditCursor>), HttpResponse> {
        let bad = |what: &str| layout::error_page(StatusCode::BAD_REQUEST, "Unknown filter", what);
        let moment = |raw: Option<&String>, what: &str| {
            filled(raw)
                .map(|v| {
                    PrimitiveDateTime::parse(v, format_description!("[year]-[month]-[day]T[hour]:[minute]"))
                        .map(PrimitiveDateTime::assume_utc)
                        .map_err(|_| bad(&format!("{what} is not a date and time.")))
                })
                .transpose()
        };
        let filter = AuditFilter {
            key_id: None,
            actor_id: filled(self.actor_id.as_ref()).map(str::to_owned),
            resource_type: filled(self.resource_type.as_ref()).map(str::to_owned),
            resource_id: filled(self.resource_id.as_ref()).map(str::to_owned),
            action: filled(self.action.as_ref()).map(str::to_owned),
            result: filled(self.result.as_ref()).map(str::parse).transpose().map_err(|_| bad("No such result."))?,
            since: moment(self.since.as_ref(), "From")?,
            until: moment(self.until.as_ref(), "Until")?,
        };
        let before = filled(self.cursor.as_ref()).map(cursor::decode::<AuditCursor>).transpose().map_err(refusal)?;
        Ok((filter, before))
    }

    /// The query string of these filters on the page `cursor` starts.
    fn with_cursor(&self, cursor: &str) -> String {
        query_at(
            &[
                ("actor_id", filled(self.actor_id.as_ref())),
                ("action", filled(self.action.as_ref())),
                ("result", filled(self.result.as_ref())),
                ("resource_type", filled(self.resource_type.as_ref())),
                ("resource_id", filled(self.resource_id.as_ref())),
                ("since", filled(self.since.as_ref())),
                ("until", filled(self.until.as_ref())),
            ],
            cursor,
        )
    }
}

pub async fn page<S: Store, L: Admission>(state: web::Data<AppState<S, L>>, req: HttpRequest) -> HttpResponse {
    either(render(&state, &req).await)
}

async fn render<S: Store, L: Admission>(state: &web::Data<AppState<S, L>>, req: &HttpRequest) -> Rendered {
    let viewer = viewer(state, req).await.map_err(refusal)?;
    let filters: Filters = serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    let (filter, before) = filters.parse()?;
    let records =
        state.service.list_audit(&viewer.principal, &filter, PAGE, before.map(|c| c.0)).await.map_err(refusal)?;
    let next = (records.len() == PAGE as usize)
        .then(|| records.last().map(|r| cursor::encode(AuditCursor(r.position()))))
        .flatten();
    let events: Vec<AuditEventResponse> = records.iter().map(AuditEventResponse::from).collect();
    let text = |field: &Option<String>| filled(field.as_ref()).map(str::to_owned);
    let body = html! {
        h1 { "Audit log" }
        form.filters method="get" action={ (BASE) "/audit" } aria-label="Filter events" {
            div.field {
                label for="f-actor" { "Actor" }
                input #f-actor type="text" name="actor_id" value=[text(&filters.actor_id)] placeholder="usr_… or key_…";
            }
            div.field {
                label for="f-action" { "Action" }
                input #f-action type="text" name="action" value=[text(&filters.action)] placeholder="key.create";
            }
            div.field {
                label for="f-result" { "Result" }
                select #f-result name="result" {
                    option value="" { "Any" }
                    @for result in ["success", "failure", "denied"] {
                        option value=(result) selected[filled(filters.result.as_ref()) == Some(result)] { (result) }
                    }
                }
            }
            div.field {
                label for="f-resource-type" { "Resource" }
                input #f-resource-type type="text" name="resource_type" value=[text(&filters.resource_type)] placeholder="key";
            }
            div.field {
                label for="f-resource-id" { "Resource id" }
                input #f-resource-id type="text" name="resource_id" value=[text(&filters.resource_id)];
            }
            div.field {
                label for="f-since" { "From (UTC)" }
                input #f-since type="datetime-local" name="since" value=[text(&filters.since)];
            }
            div.field {
                label for="f-until" { "Until (UTC)" }
                input #f-until type="datetime-local" name="until" value=[text(&filters.until)];
            }
            div.field.submit { button type="submit" { "Filter" } }
        }
        @if events.is_empty() {
            p.empty { "No event matches." }
        } @else {
            div.table-scroll {
                table.audit {
                    thead { tr {
                        th scope="col" { "When" } th scope="col" { "Actor" } th scope="col" { "Action" }
                        th scope="col" { "Resource" } th scope="col" { "Result" } th scope="col" { "Details" }
                    } }
                    tbody {
                        @for event in &events {
                            tr data-action=(event.action) data-result=(event.result) {
                                td { (moment(event.ts)) }
                                td { (event.actor_type) @if let Some(id) = &event.actor_id { br; code { (id) } } }
                                td { code { (event.action) } }
                                td { (event.resource_type) @if let Some(id) = &event.resource_id { br; code { (id) } } }
                                td { span class={ "badge " (event.result) } { (event.result) } }
                                td {
                                    details {
                                        summary { "Details" }
                                        dl.attributes {
                                            dt { "Event" } dd { code { (event.id) } }
                                            @if let Some(ip) = &event.ip { dt { "IP" } dd { (ip) } }
                                            @if let Some(agent) = &event.user_agent { dt { "User agent" } dd { (agent) } }
                                            @if let Some(request) = &event.request_id { dt { "Request" } dd { code { (request) } } }
                                            @for (name, value) in &event.metadata { dt { (name) } dd { code { (value) } } }
                                            dt { "Chain hash" } dd { code.small { (event.hash) } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(next) = next {
            nav.pager aria-label="Pages" { a rel="next" href={ (BASE) "/audit?" (filters.with_cursor(&next)) } { "Older events →" } }
        }
    };
    Ok(layout::page("Audit log", &viewer, Section::Audit, body))
}
