//! What the invitation routes take and answer.

use keyward_domain::{
    AccountId, InvitationId,
    people::{Invitation, Role},
    people_service::InvitationView,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{dto::SecretString, people::UserDto};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    /// One `@`, a dot in the domain, no whitespace; compared case-insensitively.
    #[schema(format = Email, max_length = 254, example = "grace@example.com")]
    pub email: String,
    #[schema(value_type = crate::dto::schema::RoleName, example = "member")]
    pub role: Role,
}

/// An invitation as the inviting account sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationSummary {
    #[schema(value_type = String, example = "inv_0ujsswThIGTUYm2K8FjOOfXtY1K")]
    pub id: InvitationId,
    pub email: String,
    #[schema(value_type = crate::dto::schema::RoleName, example = "member")]
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

impl From<&Invitation> for InvitationSummary {
    fn from(i: &Invitation) -> Self {
        Self { id: i.id, email: i.email.to_string(), role: i.role, expires_at: i.expires_at }
    }
}

/// `POST /v1/account/users`: the same answer whether or not the address has a login.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitedResponse {
    /// Always `invited`: the person becomes a member when they accept the link.
    #[schema(example = "invited")]
    pub status: &'static str,
    pub invitation: InvitationSummary,
    /// Only on a deployment without a mailer: the link to hand over yourself, shown this
    /// once. Such a deployment proves nothing about addresses: whoever you give the link to
    /// can accept it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "https://keys.example.com/invitations/4fZ8kQ2vN1xR7mT3pL9sW6yB0cH5jD2gE8aK1uV4nXq")]
    pub accept_url: Option<SecretString>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SentInvitationDto {
    #[serde(flatten)]
    pub invitation: InvitationSummary,
    /// Who invited them: a user (`usr_…`).
    pub invited_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub invited_at: OffsetDateTime,
}

impl From<&Invitation> for SentInvitationDto {
    fn from(i: &Invitation) -> Self {
        Self { invitation: i.into(), invited_by: i.invited_by.to_string(), invited_at: i.created_at }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SentInvitationListResponse {
    pub data: Vec<SentInvitationDto>,
}

/// An invitation addressed to the signed-in login's address.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationDto {
    #[schema(value_type = String)]
    pub id: InvitationId,
    #[schema(value_type = String)]
    pub account_id: AccountId,
    /// The inviting account's name.
    pub name: String,
    #[schema(value_type = crate::dto::schema::RoleName, example = "member")]
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub invited_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationListResponse {
    /// To accept one, open the link that came with it.
    pub data: Vec<InvitationDto>,
}

/// `GET /v1/invitations/{token}`: what the link offers.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationViewResponse {
    /// The inviting account's name.
    pub account_name: String,
    #[schema(value_type = crate::dto::schema::RoleName, example = "member")]
    pub role: Role,
    /// The address invited.
    pub email: String,
    /// The inviting person's address; `null` when that login is gone.
    pub invited_by: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    /// The address has a login: accept while signed in as it. Otherwise, accept with a
    /// password, which creates the login.
    pub has_login: bool,
}

impl From<InvitationView> for InvitationViewResponse {
    fn from(v: InvitationView) -> Self {
        Self {
            account_name: v.account_name,
            role: v.invitation.role,
            email: v.invitation.email.to_string(),
            invited_by: v.inviter_email.map(|e| e.to_string()),
            expires_at: v.invitation.expires_at,
            has_login: v.has_login,
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitationRequest {
    /// For an address without a login: the password of the login this creates (10 to
    /// 1,024 characters). Leave it out when the address has a login (sign in instead).
    #[schema(value_type = Option<String>, format = Password, min_length = 10, max_length = 1024)]
    pub password: Option<SecretString>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedResponse {
    pub user: UserDto,
    #[schema(value_type = String)]
    pub account_id: AccountId,
    pub account_name: String,
    #[schema(value_type = crate::dto::schema::RoleName, example = "member")]
    pub role: Role,
    /// Whether accepting created the login.
    pub created_login: bool,
    /// The session opened in the account joined (its cookie is set).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub session_expires_at: OffsetDateTime,
}
