//! Invitations (issue #29): every person joins an account through a link sent to their
//! address, never by the address alone. The link's token proves the mailbox; an address
//! that already has a login must also be signed in as that login to accept, so holding a
//! login whose address nobody proved is worth nothing.

use super::*;
use crate::{
    id::InvitationId,
    people::{INVITATION_LIFETIME, Invitation},
};

/// The secret of a link sent by mail: 43 base62 characters (~256 bits). Only its BLAKE3
/// hash is stored. `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkToken(String);

impl LinkToken {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// A link's token as a path carries it: 43 ASCII letters and digits, or no token.
    pub fn parse(raw: &str) -> Option<Self> {
        (raw.len() == 43 && raw.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| Self(raw.to_owned()))
    }

    pub(super) fn generate(rng: &dyn crate::random::RandomSource) -> Self {
        Self(random_token(rng))
    }

    pub fn hash(&self) -> [u8; 32] {
        *blake3::hash(self.0.as_bytes()).as_bytes()
    }

    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LinkToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkToken([redacted])")
    }
}

/// An invitation as sent: the record and its token, which exists only in this answer and
/// the link made of it. `mailed`: a mail with the link is in the outbox (a mailer is
/// configured), so the token must not be shown to the inviter.
#[derive(Debug)]
pub struct SentInvitation {
    pub invitation: Invitation,
    pub token: LinkToken,
    pub mailed: bool,
}

/// What the link's holder sees before answering.
#[derive(Debug)]
pub struct InvitationView {
    pub invitation: Invitation,
    pub account_name: String,
    /// The inviting person's address (`None` when that login is gone).
    pub inviter_email: Option<Email>,
    /// Whether the invited address has a login: then accepting needs it signed in.
    pub has_login: bool,
}

/// A mail of the account's that has not gone out yet after `tries` tries.
#[derive(Debug)]
pub struct DelayedMail {
    pub to: Email,
    pub subject: String,
    pub created_at: OffsetDateTime,
    pub tries: u32,
}

/// An accepted invitation: the membership, and a session opened in that account.
#[derive(Debug)]
pub struct Accepted {
    pub user: User,
    pub account: Account,
    pub membership: Membership,
    pub token: SessionToken,
    pub session: Session,
    /// The login was created by this acceptance (its address now proven).
    pub created_login: bool,
}

impl<S: Store, H: PasswordHasher, L: RateLimiter> PeopleService<S, H, L> {
    /// `POST /v1/account/users`: invites `email` to the account with `role`, whether or not
    /// the address has a login — the answer is the same either way, so an admin learns
    /// nothing of other accounts' people. Inviting an address again replaces its invitation
    /// (the old link stops working). Only an owner invites an owner.
    pub async fn invite(
        &self,
        principal: &Principal,
        email: &str,
        role: Role,
        ctx: &RequestContext,
    ) -> Result<SentInvitation, PeopleError> {
        let (_, my_role) = self.manager_session(principal, true)?;
        if role == Role::Owner && my_role != Role::Owner {
            return Err(ManageError::Forbidden(crate::error::Refusal::OnlyOwnersAddOwners).into());
        }
        let email = Email::new(email).map_err(|e| FieldErrors::single("email", e.to_string()))?;
        let now = self.keys.now();
        let token = LinkToken::generate(self.keys.rng());
        let invitation = Invitation {
            id: InvitationId::generate(now, self.keys.rng()),
            account_id: principal.account_id,
            email,
            role,
            invited_by: principal.actor(),
            token_hash: token.hash(),
            created_at: now,
            expires_at: now + INVITATION_LIFETIME,
        };
        self.store().invite(&invitation).await.map_err(Self::membership_error)?;
        // The mail commits with the invitation, in the call's unit of work.
        let mailed = match &self.mail {
            Some(links) => {
                let account = self.store().get_account(principal.account_id).await?.ok_or(ManageError::NotFound)?;
                let inviter = match principal.actor() {
                    Actor::User(id) => self.store().get_user(id).await?.map(|u| u.email),
                    Actor::Key(_) | Actor::System => None,
                };
                let link = format!("{}/invitations/{}", links.public_url, token.expose_secret());
                let words =
                    crate::mail::templates::invitation(&account.name, role, inviter.as_ref(), &invitation.email, &link);
                self.enqueue(Some(account.id), &invitation.email, words, now).await?;
                true
            }
            None => false,
        };
        self.audit(
            ctx,
            Audited {
                action: Action::UserInvite,
                account: Some(principal.account_id),
                actor: principal.actor(),
                resource_id: Some(invitation.id.to_string()),
                result: AuditResult::Success,
                metadata: metadata(&[("role", role.as_str()), ("mailed", if mailed { "true" } else { "false" })]),
            },
        );
        Ok(SentInvitation { invitation, token, mailed })
    }

    /// The account's invitations that wait for an answer (expired ones too, until purged).
    pub async fn list_sent_invitations(&self, principal: &Principal) -> Result<Vec<Invitation>, PeopleError> {
        principal.require(management::USERS_READ)?;
        Ok(self.store().invitations_from(principal.account_id).await?)
    }

    /// The account's mail that has not gone out after a first try (the mail server is down
    /// or refuses it), oldest first, with its tries: what the dashboard shows as delayed.
    pub async fn delayed_mail(&self, principal: &Principal) -> Result<Vec<DelayedMail>, PeopleError> {
        principal.require(management::USERS_READ)?;
        let pending = self.store().pending_mail_of(principal.account_id).await?;
        Ok(pending
            .into_iter()
            .filter(|(_, tries)| *tries > 0)
            .map(|(mail, tries)| DelayedMail { to: mail.to, subject: mail.subject, created_at: mail.created_at, tries })
            .collect())
    }

    /// Withdraws one of the account's invitations: the same session and step-up as
    /// inviting, and only an owner withdraws an invitation to be an owner.
    pub async fn withdraw_invitation(
        &self,
        principal: &Principal,
        id: InvitationId,
        ctx: &RequestContext,
    ) -> Result<(), PeopleError> {
        let (_, my_role) = self.manager_session(principal, true)?;
        let pending = self.store().invitations_from(principal.account_id).await?;
        let invitation = pending.into_iter().find(|i| i.id == id).ok_or(ManageError::NotFound)?;
        if invitation.role == Role::Owner && my_role != Role::Owner {
            return Err(ManageError::Forbidden(crate::error::Refusal::OnlyOwnersChangeOwners).into());
        }
        self.store().take_invitation(id).await?.ok_or(ManageError::NotFound)?;
        self.audit_withdrawal(ctx, principal.actor(), &invitation, "withdrawn");
        Ok(())
    }

    /// Withdraws every invitation `user` sent from `account`: they no longer manage it
    /// (removed or demoted), so nobody may join on their word — not even a second address of
    /// theirs. The call's one audit event (the removal, the change of role) names them.
    pub(super) async fn withdraw_invitations_of(
        &self,
        account: AccountId,
        user: UserId,
    ) -> Result<Vec<Invitation>, PeopleError> {
        Ok(self.store().withdraw_invitations_by(account, &Actor::User(user)).await?)
    }

    fn audit_withdrawal(&self, ctx: &RequestContext, actor: Actor, invitation: &Invitation, reason: &str) {
        self.audit(
            ctx,
            Audited {
                action: Action::InvitationWithdraw,
                account: Some(invitation.account_id),
                actor,
                resource_id: Some(invitation.id.to_string()),
                result: AuditResult::Success,
                metadata: metadata(&[("role", invitation.role.as_str()), ("reason", reason)]),
            },
        );
    }

    /// The live invitation of a link; unknown, used and expired links are all `NotFound`.
    async fn live_invitation(&self, token: &LinkToken) -> Result<(Invitation, String), PeopleError> {
        let found = self.store().find_invitation(&token.hash()).await?;
        let now = self.keys.now();
        Ok(found.filter(|(invitation, _)| invitation.is_live(now)).ok_or(ManageError::NotFound)?)
    }

    /// `GET /v1/invitations/{token}`: what the link offers, to whoever holds it. The look is
    /// the inviting account's event (someone opened its link).
    pub async fn describe_invitation(
        &self,
        token: &LinkToken,
        ctx: &RequestContext,
    ) -> Result<InvitationView, PeopleError> {
        let (invitation, account_name) = self.live_invitation(token).await?;
        self.audit(
            ctx,
            Audited {
                action: Action::InvitationRead,
                account: Some(invitation.account_id),
                actor: Actor::System,
                resource_id: Some(invitation.id.to_string()),
                result: AuditResult::Success,
                metadata: Default::default(),
            },
        );
        let inviter_email = match invitation.invited_by {
            Actor::User(id) => self.store().get_user(id).await?.map(|u| u.email),
            Actor::Key(_) | Actor::System => None,
        };
        let has_login = self.store().find_user_by_email(&invitation.email).await?.is_some();
        Ok(InvitationView { invitation, account_name, inviter_email, has_login })
    }

    /// `POST /v1/invitations/{token}/accept`. For an address without a login, `password`
    /// creates it (the token proved the address); for one with a login, `signed_in` must be
    /// a live session of that very login (none: `SignInRequired`; another's: forbidden).
    /// The invitation is used once, and a session is opened in the account joined.
    pub async fn accept_invitation(
        &self,
        token: &LinkToken,
        password: Option<Password>,
        signed_in: Option<&SessionToken>,
        ctx: &RequestContext,
    ) -> Result<Accepted, PeopleError> {
        let (invitation, _) = self.live_invitation(token).await?;
        let now = self.keys.now();
        let (user, created_login) = match self.store().find_user_by_email(&invitation.email).await? {
            Some(user) => {
                let Some(signed_in) = signed_in else { return Err(PeopleError::SignInRequired) };
                let session = self.signed_in(signed_in).await?;
                if session.user_id != user.id {
                    return Err(ManageError::Forbidden(crate::error::Refusal::NotTheInvitedLogin).into());
                }
                if password.is_some() {
                    return Err(FieldErrors::single("password", "this address has a login: sign in instead").into());
                }
                (user, false)
            }
            None => {
                let password = password.ok_or_else(|| {
                    FieldErrors::single("password", "choose a password: this address has no login yet")
                })?;
                let hash = self.hasher.hash(password).await.map_err(PeopleError::Hashing)?;
                let user = User {
                    id: UserId::generate(now, self.keys.rng()),
                    email: invitation.email.clone(),
                    password_hash: hash,
                    password_change_required: false,
                    created_at: now,
                    updated_at: now,
                };
                // Created meanwhile (another invitation accepted): it must sign in.
                self.store().create_user(&user, None).await.map_err(|e| match e {
                    CreateUserError::DuplicateEmail => PeopleError::SignInRequired,
                    CreateUserError::Storage(e) => e.into(),
                })?;
                (user, true)
            }
        };
        // Of two uses of one link, one takes it; the other finds nothing (and its unit of
        // work rolls back whatever it wrote).
        let invitation = self.store().take_invitation(invitation.id).await?.ok_or(ManageError::NotFound)?;
        let membership =
            Membership { user_id: user.id, account_id: invitation.account_id, role: invitation.role, created_at: now };
        self.store().add_membership(&membership).await.map_err(|e| match e {
            MembershipError::Duplicate => PeopleError::AlreadyMember { field: "token" },
            other => Self::membership_error(other),
        })?;
        let account = self.store().get_account(invitation.account_id).await?.ok_or(ManageError::NotFound)?;
        let (token, session) = self.open_session(user.id, Some(account.id)).await?;
        self.audit(
            ctx,
            Audited {
                action: Action::InvitationAccept,
                account: Some(account.id),
                actor: Actor::User(user.id),
                resource_id: Some(invitation.id.to_string()),
                result: AuditResult::Success,
                metadata: metadata(&[
                    ("role", invitation.role.as_str()),
                    ("login", if created_login { "created" } else { "existing" }),
                ]),
            },
        );
        Ok(Accepted { user, account, membership, token, session, created_login })
    }

    /// `DELETE /v1/invitations/{token}`: the link's holder turns it down.
    pub async fn decline_invitation(&self, token: &LinkToken, ctx: &RequestContext) -> Result<(), PeopleError> {
        let (invitation, _) = self.live_invitation(token).await?;
        let invitation = self.store().take_invitation(invitation.id).await?.ok_or(ManageError::NotFound)?;
        self.audit(
            ctx,
            Audited {
                action: Action::InvitationDecline,
                account: Some(invitation.account_id),
                actor: Actor::System,
                resource_id: Some(invitation.id.to_string()),
                result: AuditResult::Success,
                metadata: metadata(&[("role", invitation.role.as_str())]),
            },
        );
        Ok(())
    }

    /// `GET /v1/auth/invitations`: the invitations addressed to the signed-in login's
    /// address, with each account's name. Only to read: accepting takes the link's token.
    pub async fn invitations_for_login(
        &self,
        signed_in: &SessionToken,
    ) -> Result<Vec<(Invitation, String)>, PeopleError> {
        let session = self.signed_in(signed_in).await?;
        let user = self.store().get_user(session.user_id).await?.ok_or(ManageError::NotFound)?;
        let now = self.keys.now();
        let mut waiting = self.store().invitations_to(&user.email).await?;
        waiting.retain(|(invitation, _)| invitation.is_live(now));
        Ok(waiting)
    }
}
