//! Members of an account: the operator's way of adding people, roles, removal, and what a
//! change of membership does to the credentials and invitations it gave. (Everyone else
//! joins by invitation: `invitations`.)

use super::*;

impl<S: Store, H: PasswordHasher, L: RateLimiter> PeopleService<S, H, L> {
    pub async fn list_users(&self, principal: &Principal) -> Result<Vec<(User, Membership)>, PeopleError> {
        principal.require(management::USERS_READ)?;
        Ok(self.store().members(principal.account_id).await?)
    }

    /// The operator's path (CLI): no session, no step-up, and the operator's authority
    /// stands in for the person's consent (an existing user is added at once). `password`
    /// of `None` generates one for a new user, shown to the operator who reads it.
    pub async fn add_member(
        &self,
        account: AccountId,
        email: Email,
        role: Role,
        password: Option<Password>,
    ) -> Result<AddedMember, PeopleError> {
        let now = self.keys.now();
        if let Some(user) = self.store().find_user_by_email(&email).await? {
            let membership = Membership { user_id: user.id, account_id: account, role, created_at: now };
            self.store().add_membership(&membership).await.map_err(|e| match e {
                MembershipError::Duplicate => PeopleError::AlreadyMember { field: "email" },
                MembershipError::Storage(e) => e.into(),
                other => {
                    PeopleError::Manage(ManageError::Storage(crate::ports::StorageError::Internal(Box::new(other))))
                }
            })?;
            return Ok(AddedMember { user, membership, initial_password: None });
        }
        // A generated password is read by the operator and passed on: someone else chose
        // it, so it works once, to choose one's own.
        let change_required = password.is_none();
        self.create_member(account, email, role, password, change_required).await
    }

    /// Creates a user and their membership. `change_required`: the password (given or
    /// generated) was chosen by someone other than the user, who must change it first.
    async fn create_member(
        &self,
        account: AccountId,
        email: Email,
        role: Role,
        password: Option<Password>,
        change_required: bool,
    ) -> Result<AddedMember, PeopleError> {
        let now = self.keys.now();
        let membership_for = |user_id| Membership { user_id, account_id: account, role, created_at: now };
        let generated = password.is_none();
        let password = password.unwrap_or_else(|| Password::generate(self.keys.rng()));
        let hash = self.hasher.hash(password.clone()).await.map_err(PeopleError::Hashing)?;
        let user = User {
            id: UserId::generate(now, self.keys.rng()),
            email,
            password_hash: hash,
            password_change_required: change_required,
            created_at: now,
            updated_at: now,
        };
        let membership = membership_for(user.id);
        self.store().create_user(&user, Some(&membership)).await.map_err(|e| match e {
            CreateUserError::DuplicateEmail => {
                PeopleError::from(FieldErrors::single("email", "a user with this email exists"))
            }
            CreateUserError::Storage(e) => e.into(),
        })?;
        Ok(AddedMember { user, membership, initial_password: generated.then_some(password) })
    }

    /// Sets a user's password (operator's path: CLI); `change_required` when the operator
    /// only passes it on (a generated one), so that it works once.
    pub async fn set_password(
        &self,
        email: &Email,
        password: Password,
        change_required: bool,
    ) -> Result<User, PeopleError> {
        let user = self.store().find_user_by_email(email).await?.ok_or(ManageError::NotFound)?;
        let hash = self.hasher.hash(password).await.map_err(PeopleError::Hashing)?;
        self.store().set_password_hash(user.id, &hash, change_required, self.keys.now()).await?;
        // A reset ends everything the old password opened, everywhere.
        self.end_login_credentials(user.id, None).await?;
        Ok(user)
    }

    /// Owners change owners: promoting to owner or changing an owner needs an owner.
    async fn guard_owner_change(
        &self,
        principal: &Principal,
        target: UserId,
        new_role: Option<Role>,
    ) -> Result<Membership, PeopleError> {
        let (_, my_role) = self.manager_session(principal, true)?;
        let current = self.store().get_membership(principal.account_id, target).await?.ok_or(ManageError::NotFound)?;
        let touches_owner = current.role == Role::Owner || new_role == Some(Role::Owner);
        if touches_owner && my_role != Role::Owner {
            return Err(ManageError::Forbidden(crate::error::Refusal::OnlyOwnersChangeOwners).into());
        }
        Ok(current)
    }

    pub(super) fn membership_error(e: MembershipError) -> PeopleError {
        match e {
            MembershipError::NotFound => ManageError::NotFound.into(),
            MembershipError::LastOwner => ManageError::Forbidden(crate::error::Refusal::LastOwner).into(),
            MembershipError::Duplicate => PeopleError::AlreadyMember { field: "email" },
            MembershipError::Storage(e) => e.into(),
        }
    }

    pub async fn set_user_role(
        &self,
        principal: &Principal,
        user: UserId,
        role: Role,
        ctx: &RequestContext,
    ) -> Result<(User, Membership), PeopleError> {
        let before = self.guard_owner_change(principal, user, Some(role)).await?;
        self.store().set_role(principal.account_id, user, role).await.map_err(Self::membership_error)?;
        let reshaped = self.end_derived_credentials(principal.account_id, user, Some(role)).await?;
        let withdrawn = if role.manages_account() {
            Vec::new()
        } else {
            self.withdraw_invitations_of(principal.account_id, user).await?
        };
        self.audit(
            ctx,
            Audited {
                action: Action::UserUpdate,
                account: Some(principal.account_id),
                actor: principal.actor(),
                resource_id: Some(user.to_string()),
                result: AuditResult::Success,
                metadata: metadata(&[
                    ("from", before.role.as_str()),
                    ("to", role.as_str()),
                    ("temporary_keys_reshaped", &reshaped.to_string()),
                    ("invitations_withdrawn", &ids(&withdrawn)),
                ]),
            },
        );
        let found = self.store().get_user(user).await?.ok_or(ManageError::NotFound)?;
        Ok((found, Membership { role, ..before }))
    }

    pub async fn remove_user(
        &self,
        principal: &Principal,
        user: UserId,
        ctx: &RequestContext,
    ) -> Result<(), PeopleError> {
        self.guard_owner_change(principal, user, None).await?;
        // Removing the membership also ends its sessions (the store does both at once).
        self.store().remove_membership(principal.account_id, user).await.map_err(Self::membership_error)?;
        let revoked = self.end_derived_credentials(principal.account_id, user, None).await?;
        let withdrawn = self.withdraw_invitations_of(principal.account_id, user).await?;
        self.audit(
            ctx,
            Audited {
                action: Action::UserRemove,
                account: Some(principal.account_id),
                actor: principal.actor(),
                resource_id: Some(user.to_string()),
                result: AuditResult::Success,
                metadata: metadata(&[
                    ("temporary_keys_revoked", &revoked.to_string()),
                    ("invitations_withdrawn", &ids(&withdrawn)),
                ]),
            },
        );
        Ok(())
    }

    /// A temporary key is a snapshot of its user's role; this keeps every live one of
    /// `user` in `account` in step with the membership: with a new role, their scopes become
    /// the role's; with none (removed), they are revoked. Stores evict what they change from
    /// every instance's cache, so the very next request sees it. Sessions need nothing: they
    /// read the membership on every request, and a removal deletes them. Returns how many
    /// keys changed.
    async fn end_derived_credentials(
        &self,
        account: AccountId,
        user: UserId,
        role: Option<Role>,
    ) -> Result<usize, PeopleError> {
        let now = self.keys.now();
        let keys = self.store().live_temporary_keys(account, user, now).await?;
        let changed = keys.len();
        for key in keys {
            match role {
                Some(role) => {
                    let reshaped = Key { scopes: role.scopes(), updated_at: now, ..key.clone() };
                    self.store().update_key(&key, &reshaped).await?;
                }
                None => self.keys.revoke(key).await?,
            }
        }
        Ok(changed)
    }

    /// Creates an account with its owner (operator's path: CLI and the embedded bootstrap).
    pub async fn create_account_with_owner(
        &self,
        name: &str,
        plan: Plan,
        owner_email: Email,
        password: Option<Password>,
        with_account_key: bool,
    ) -> Result<(Account, AddedMember, Option<IssuedKey>), PeopleError> {
        let (account, issued) = self.keys.create_account(name, plan, with_account_key).await?;
        let owner = self.add_member(account.id, owner_email, Role::Owner, password).await?;
        Ok((account, owner, issued))
    }
}

/// The ids of `invitations`, comma-separated, for audit metadata.
fn ids(invitations: &[crate::people::Invitation]) -> String {
    invitations.iter().map(|i| i.id.to_string()).collect::<Vec<_>>().join(",")
}
