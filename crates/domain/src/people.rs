//! People: users, their memberships in accounts with a role, login sessions, the step-up
//! window, and the lifetimes of sessions and temporary keys.

use std::fmt;

use time::{Duration, OffsetDateTime};

use crate::{
    id::{AccountId, KeyId, SessionId, UserId},
    password::PasswordHash,
    plan::text_enum,
    scope::{Scope, ScopeSet, management},
};

/// How long a password re-entry authorises sensitive actions, for that session only.
pub const STEP_UP_WINDOW: Duration = Duration::minutes(5);
/// A session unused for this long is over.
pub const SESSION_IDLE_TIMEOUT: Duration = Duration::hours(1);
/// A session is over this long after login, however busy.
pub const SESSION_ABSOLUTE_TIMEOUT: Duration = Duration::hours(12);
/// A temporary key unused for this long expires (sliding).
pub const TEMPORARY_KEY_IDLE_SECONDS: u32 = 6 * 3600;
/// A temporary key expires this long after login at the latest.
pub const TEMPORARY_KEY_LIFETIME: Duration = Duration::days(7);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Member,
    Admin,
    Owner,
}
text_enum!(Role { Viewer => "viewer", Member => "member", Admin => "admin", Owner => "owner" });

impl Role {
    /// The management scopes a role implies (SPEC §2): viewer reads; member also writes and
    /// verifies keys; admin and owner hold them all.
    pub fn scopes(self) -> ScopeSet {
        let reads = management::ALL.iter().filter(|s| s.ends_with(":read"));
        let granted: Vec<&str> = match self {
            Self::Viewer => reads.copied().collect(),
            Self::Member => reads.copied().chain([management::KEYS_WRITE, management::KEYS_VERIFY]).collect(),
            Self::Admin | Self::Owner => management::ALL.to_vec(),
        };
        ScopeSet::from_scopes(granted.into_iter().filter_map(|s| Scope::new(s).ok()))
    }

    /// Admins and owners manage users and account keys.
    pub fn manages_account(self) -> bool {
        matches!(self, Self::Admin | Self::Owner)
    }
}

/// An email address, trimmed and lower-cased: the login name.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be an email address of at most 254 characters")]
pub struct InvalidEmail;

impl Email {
    pub fn new(value: &str) -> Result<Self, InvalidEmail> {
        let value = value.trim().to_lowercase();
        let valid = value.len() <= 254
            && !value.chars().any(char::is_whitespace)
            && value.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains('@')
            });
        if valid { Ok(Self(value)) } else { Err(InvalidEmail) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub password_hash: PasswordHash,
    /// The password was chosen by someone else (an admin's `POST /v1/account/users`): the
    /// user must change it before doing anything else.
    pub password_change_required: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    pub user_id: UserId,
    pub account_id: AccountId,
    pub role: Role,
    pub created_at: OffsetDateTime,
}

/// A login session. The cookie holds a random token; only its BLAKE3 hash is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub token_hash: [u8; 32],
    pub user_id: UserId,
    /// The account this session works in; `None` for a login that belongs to no account
    /// (yet): it may see its session and its invitations, accept one, and log out.
    pub account_id: Option<AccountId>,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    /// When the password was last re-entered in this session.
    pub step_up_at: Option<OffsetDateTime>,
    /// The temporary key minted by this login, revoked at logout.
    pub temporary_key_id: Option<KeyId>,
    /// Logged in with a password someone else chose: this session may only change it (or
    /// log out). Changing it ends this session and starts an unrestricted one.
    pub password_change_required: bool,
}

/// An offer of membership, addressed to an e-mail address (issue #29). Whoever can read
/// that mailbox holds the link's token, stored here only as its BLAKE3 hash: the token is
/// what proves the address, and a login alone never joins an account. An address with a
/// login must also be signed in as that login to accept. Pending only: accepting,
/// declining and withdrawing delete it (the audit trail keeps the story).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub id: crate::id::InvitationId,
    pub account_id: AccountId,
    pub email: Email,
    pub role: Role,
    pub invited_by: crate::key::Actor,
    pub token_hash: [u8; 32],
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// How long an invitation's link works.
pub const INVITATION_LIFETIME: time::Duration = time::Duration::days(7);

impl Invitation {
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        now < self.expires_at
    }
}

impl Session {
    pub fn expires_at(&self) -> OffsetDateTime {
        (self.last_seen_at + SESSION_IDLE_TIMEOUT).min(self.created_at + SESSION_ABSOLUTE_TIMEOUT)
    }

    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        now < self.expires_at()
    }

    /// Whether a sensitive action may proceed now in this session.
    pub fn step_up_open(&self, now: OffsetDateTime) -> bool {
        self.step_up_at.is_some_and(|at| now < at + STEP_UP_WINDOW)
    }

    pub fn step_up_expires_at(&self) -> Option<OffsetDateTime> {
        self.step_up_at.map(|at| at + STEP_UP_WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;

    #[test]
    fn roles_imply_the_documented_scopes() {
        let viewer = Role::Viewer.scopes();
        assert!(viewer.grants_str("keys:read") && viewer.grants_str("audit:read"));
        assert!(!viewer.grants_str("keys:write"));
        let member = Role::Member.scopes();
        assert!(member.grants_str("keys:write") && member.grants_str("keys:verify"));
        assert!(!member.grants_str("keyspaces:write"));
        assert_eq!(Role::Admin.scopes(), Role::Owner.scopes());
        assert!(Role::Admin.scopes().grants_str("keyspaces:write"));
        assert!(Role::Owner > Role::Admin && Role::Admin > Role::Member && Role::Member > Role::Viewer);
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(Email::new("  Ada@Example.COM ").unwrap().as_str(), "ada@example.com");
        for bad in ["", "ada", "@example.com", "ada@example", "ada@.com", "a da@example.com", "a@b@c.com"] {
            assert!(Email::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn session_windows() {
        let rng = SeededRandom::new(1);
        let t0 = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        let mut session = Session {
            id: SessionId::generate(t0, &rng),
            token_hash: [0; 32],
            user_id: UserId::generate(t0, &rng),
            account_id: Some(AccountId::generate(t0, &rng)),
            created_at: t0,
            last_seen_at: t0,
            step_up_at: None,
            temporary_key_id: None,
            password_change_required: false,
        };
        assert!(!session.step_up_open(t0));
        session.step_up_at = Some(t0);
        assert!(session.step_up_open(t0 + Duration::seconds(299)));
        assert!(!session.step_up_open(t0 + Duration::seconds(300)));
        assert!(session.is_live(t0 + Duration::minutes(59)));
        assert!(!session.is_live(t0 + Duration::minutes(60)));
        session.last_seen_at = t0 + Duration::hours(11) + Duration::minutes(50);
        assert!(session.is_live(t0 + Duration::hours(11) + Duration::minutes(59)));
        assert!(!session.is_live(t0 + Duration::hours(12)), "absolute timeout wins");
    }
}
