//! `GET /dashboard/people`: the account's members. Owners and admins invite people
//! (`POST /v1/account/users`: the link goes by mail, or, without a mailer, is shown once to
//! pass on), change roles, remove members and withdraw invitations that wait for an answer —
//! each behind the step-up prompt where the API asks for it.

use actix_web::{HttpRequest, HttpResponse, web};
use keyward_domain::{
    Store,
    people::{Invitation, Role},
    people_service::DelayedMail,
    ratelimit::Admission,
};
use keyward_http::AppState;
use maud::{Markup, html};

use super::{Rendered, either, keys::show_once_panel, refusal};
use crate::{
    BASE,
    format::moment,
    layout::{self, Section},
    viewer::{Viewer, viewer},
};

const ROLES: [Role; 4] = [Role::Viewer, Role::Member, Role::Admin, Role::Owner];

pub async fn page<S: Store, L: Admission>(state: web::Data<AppState<S, L>>, req: HttpRequest) -> HttpResponse {
    either(render(&state, &req).await)
}

async fn render<S: Store, L: Admission>(state: &web::Data<AppState<S, L>>, req: &HttpRequest) -> Rendered {
    let viewer = viewer(state, req).await.map_err(refusal)?;
    let members = state.people.list_users(&viewer.principal).await.map_err(refusal)?;
    let invitations = match state.cookies.token_of(req) {
        Some(token) => state.people.invitations_for_login(&token).await.map_err(refusal)?,
        None => Vec::new(),
    };
    let sent = state.people.list_sent_invitations(&viewer.principal).await.map_err(refusal)?;
    let delayed = state.people.delayed_mail(&viewer.principal).await.map_err(refusal)?;
    let manages = viewer.role.manages_account();
    let body = html! {
        h1 { "People" }
        @if !delayed.is_empty() {
            (delayed_mail(&delayed))
        }
        @if !invitations.is_empty() {
            section.card aria-labelledby="invitations" {
                h2 #invitations { "Invitations to you" }
                ul.invitations {
                    @for (invitation, name) in &invitations {
                        li {
                            "Join " strong { (name) } " as " (invitation.role) ", until " (moment(invitation.expires_at)) "."
                        }
                    }
                }
                p.muted.small { "To accept one, open the link that came with it by mail." }
            }
        }
        div.table-scroll {
            table.people {
                thead { tr {
                    th scope="col" { "Email" } th scope="col" { "Role" } th scope="col" { "Member since" }
                    @if manages { th scope="col" { span.visually-hidden { "Actions" } } }
                } }
                tbody {
                    @for (user, membership) in &members {
                        @let email = user.email.to_string();
                        tr data-email=(email) {
                            td { (email) @if user.id == viewer.user_id { " " span.muted { "(you)" } } }
                            td {
                                @if manages {
                                    form.inline data-api={ "PATCH /v1/account/users/" (user.id) } data-then="reload" {
                                        label.visually-hidden for={ "role-" (user.id) } { "Role of " (email) }
                                        select id={ "role-" (user.id) } name="role" {
                                            @for role in ROLES {
                                                option value=(role) selected[role == membership.role] { (role) }
                                            }
                                        }
                                        button.secondary.small type="submit" { "Change" }
                                        p.error role="alert" data-error {}
                                    }
                                } @else {
                                    (membership.role)
                                }
                            }
                            td { (moment(membership.created_at)) }
                            @if manages {
                                td {
                                    button.danger.small type="button" data-api={ "DELETE /v1/account/users/" (user.id) }
                                        data-confirm={ "Remove " (email) " from " (viewer.account.name) "? Their sessions and temporary keys in this account end at once." }
                                        data-then="reload" aria-label={ "Remove " (email) } { "Remove" }
                                }
                            }
                        }
                    }
                }
            }
        }
        p.error role="alert" data-error {}
        @if !sent.is_empty() {
            (sent_invitations(&viewer, &sent))
        }
        @if manages {
            (add_form(&viewer))
            (show_once_panel("The invitation's link", Some(&format!("{BASE}/people"))))
        } @else {
            p.forbidden { "People are managed by owners and admins; your role is " (viewer.role) "." }
        }
    };
    Ok(layout::page("People", &viewer, Section::People, body))
}

/// Mail of the account's that the mail server has not taken yet: Keyward keeps trying.
fn delayed_mail(delayed: &[DelayedMail]) -> Markup {
    html! {
        section.card.warning #delayed-mail role="status" aria-labelledby="delayed-mail-title" {
            h2 #delayed-mail-title { "Mail delayed" }
            p { "The mail server has not taken these yet. Keyward keeps trying, with growing pauses; \
                 whoever runs it can check the mail server (" code { "keyward_mail_delayed" } " in the metrics)." }
            ul {
                @for mail in delayed {
                    li { (mail.subject) " to " strong { (mail.to) } ", since " (moment(mail.created_at)) ", "
                        (mail.tries) @if mail.tries == 1 { " try" } @else { " tries" } }
                }
            }
        }
    }
}

/// The account's invitations that wait for an answer; owners and admins withdraw them.
fn sent_invitations(viewer: &Viewer, sent: &[Invitation]) -> Markup {
    let manages = viewer.role.manages_account();
    html! {
        section aria-labelledby="sent-invitations" {
            h2 #sent-invitations { "Invitations waiting for an answer" }
            div.table-scroll {
                table.sent-invitations {
                    thead { tr {
                        th scope="col" { "Email" } th scope="col" { "Role" } th scope="col" { "Invited" }
                        th scope="col" { "Expires" } th scope="col" { "By" }
                        @if manages { th scope="col" { span.visually-hidden { "Actions" } } }
                    } }
                    tbody {
                        @for invitation in sent {
                            @let email = &invitation.email;
                            tr data-email=(email) {
                                td { (email) }
                                td { (invitation.role) }
                                td { (moment(invitation.created_at)) }
                                td { (moment(invitation.expires_at)) }
                                td { code { (invitation.invited_by) } }
                                @if manages {
                                    td {
                                        button.danger.small type="button"
                                            data-api={ "DELETE /v1/account/invitations/" (invitation.id) }
                                            data-confirm={ "Withdraw the invitation of " (email) " to " (viewer.account.name) "?" }
                                            data-then="reload" aria-label={ "Withdraw the invitation of " (email) } { "Withdraw" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            p.error role="alert" data-error {}
        }
    }
}

fn add_form(viewer: &Viewer) -> Markup {
    html! {
        form.card.wide #add-person data-api="POST /v1/account/users" data-then="added" {
            h2 { "Invite a person" }
            p.muted { "They get a link by mail and join when they accept it: with a password of their own if \
                       they have no login yet, signed in if they have. Where no mailer is configured, the link \
                       is shown here once for you to pass on." }
            div.row {
                div.field {
                    label for="email" { "Email" }
                    input #email type="email" name="email" required maxlength="254" aria-describedby="email-error";
                    p.field-error #email-error data-error-for="email" {}
                }
                div.field {
                    label for="role" { "Role" }
                    select #role name="role" {
                        @for role in ROLES {
                            // Only owners make owners (the API says so too).
                            @if role != Role::Owner || viewer.role == Role::Owner {
                                option value=(role) selected[role == Role::Member] { (role) }
                            }
                        }
                    }
                }
            }
            p.error role="alert" data-error {}
            p.notice role="status" data-notice {}
            div.actions { button type="submit" { "Invite" } }
        }
    }
}
