//! `UserStore` and `SessionStore` in memory: users, memberships, invitations, sessions.

use crate::*;

impl UserStore for MemStore {
    fn create_user(
        &self,
        user: &User,
        membership: Option<&Membership>,
    ) -> impl Future<Output = Result<(), CreateUserError>> + Send {
        ready(self.write(|state| {
            if state.users.values().any(|u| u.email == user.email) {
                return Err(CreateUserError::DuplicateEmail);
            }
            state.users.insert(user.id, user.clone());
            if let Some(m) = membership {
                state.memberships.insert((m.account_id, m.user_id), *m);
            }
            Ok(())
        }))
    }

    fn find_user_by_email(&self, email: &Email) -> impl Future<Output = Result<Option<User>, StorageError>> + Send {
        ready(Ok(self.read(|state| state.users.values().find(|u| &u.email == email).cloned())))
    }

    fn get_user(&self, id: UserId) -> impl Future<Output = Result<Option<User>, StorageError>> + Send {
        ready(Ok(self.read(|state| state.users.get(&id).cloned())))
    }

    fn set_password_hash(
        &self,
        id: UserId,
        hash: &PasswordHash,
        change_required: bool,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<(), UpdateError>> + Send {
        ready(self.write(|state| {
            let user = state.users.get_mut(&id).ok_or(UpdateError::NotFound)?;
            user.password_hash = hash.clone();
            user.password_change_required = change_required;
            user.updated_at = at;
            Ok(())
        }))
    }

    fn memberships_of(
        &self,
        user: UserId,
    ) -> impl Future<Output = Result<Vec<(Membership, String)>, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            let mut found: Vec<(Membership, String)> = state
                .memberships
                .values()
                .filter(|m| m.user_id == user)
                .filter_map(|m| state.accounts.get(&m.account_id).map(|a| (*m, a.name.clone())))
                .collect();
            found.sort_by_key(|(m, _)| (m.created_at, m.account_id));
            found
        })))
    }

    fn get_membership(
        &self,
        account: AccountId,
        user: UserId,
    ) -> impl Future<Output = Result<Option<Membership>, StorageError>> + Send {
        ready(Ok(self.read(|state| state.memberships.get(&(account, user)).copied())))
    }

    fn members(
        &self,
        account: AccountId,
    ) -> impl Future<Output = Result<Vec<(User, Membership)>, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            let mut found: Vec<(User, Membership)> = state
                .memberships
                .values()
                .filter(|m| m.account_id == account)
                .filter_map(|m| state.users.get(&m.user_id).map(|u| (u.clone(), *m)))
                .collect();
            found.sort_by_key(|(u, m)| (m.created_at, u.id));
            found
        })))
    }

    fn add_membership(&self, membership: &Membership) -> impl Future<Output = Result<(), MembershipError>> + Send {
        ready(self.write(|state| {
            let key = (membership.account_id, membership.user_id);
            if state.memberships.contains_key(&key) {
                return Err(MembershipError::Duplicate);
            }
            state.memberships.insert(key, *membership);
            Ok(())
        }))
    }

    fn invite(&self, invitation: &Invitation) -> impl Future<Output = Result<(), MembershipError>> + Send {
        ready(self.write(|state| {
            let member = state
                .users
                .values()
                .find(|u| u.email == invitation.email)
                .is_some_and(|u| state.memberships.contains_key(&(invitation.account_id, u.id)));
            if member {
                return Err(MembershipError::Duplicate);
            }
            let replaced: Vec<InvitationId> = state
                .invitations
                .values()
                .filter(|i| i.account_id == invitation.account_id && i.email == invitation.email)
                .map(|i| i.id)
                .collect();
            for id in replaced {
                state.invitations.remove(&id);
            }
            state.invitations.insert(invitation.id, invitation.clone());
            Ok(())
        }))
    }

    fn find_invitation(
        &self,
        token_hash: &[u8; 32],
    ) -> impl Future<Output = Result<Option<(Invitation, String)>, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            state
                .invitations
                .values()
                .find(|i| &i.token_hash == token_hash)
                .and_then(|i| state.accounts.get(&i.account_id).map(|a| (i.clone(), a.name.clone())))
        })))
    }

    fn take_invitation(
        &self,
        id: InvitationId,
    ) -> impl Future<Output = Result<Option<Invitation>, StorageError>> + Send {
        ready(Ok(self.write(|state| state.invitations.remove(&id))))
    }

    fn invitations_to(
        &self,
        email: &Email,
    ) -> impl Future<Output = Result<Vec<(Invitation, String)>, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            let mut found: Vec<_> = state
                .invitations
                .values()
                .filter(|i| &i.email == email)
                .filter_map(|i| state.accounts.get(&i.account_id).map(|a| (i.clone(), a.name.clone())))
                .collect();
            found.sort_by_key(|(i, _)| (i.created_at, i.id));
            found
        })))
    }

    fn invitations_from(
        &self,
        account: AccountId,
    ) -> impl Future<Output = Result<Vec<Invitation>, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            let mut found: Vec<_> = state.invitations.values().filter(|i| i.account_id == account).cloned().collect();
            found.sort_by_key(|i| (i.created_at, i.id));
            found
        })))
    }

    fn withdraw_invitations_by(
        &self,
        account: AccountId,
        actor: &Actor,
    ) -> impl Future<Output = Result<Vec<Invitation>, StorageError>> + Send {
        ready(Ok(self.write(|state| {
            let mut taken: Vec<Invitation> = state
                .invitations
                .values()
                .filter(|i| i.account_id == account && &i.invited_by == actor)
                .cloned()
                .collect();
            taken.sort_by_key(|i| (i.created_at, i.id));
            for invitation in &taken {
                state.invitations.remove(&invitation.id);
            }
            taken
        })))
    }

    fn set_role(
        &self,
        account: AccountId,
        user: UserId,
        role: Role,
    ) -> impl Future<Output = Result<(), MembershipError>> + Send {
        ready(self.write(|state| {
            let owners =
                state.memberships.values().filter(|m| m.account_id == account && m.role == Role::Owner).count();
            let membership = state.memberships.get_mut(&(account, user)).ok_or(MembershipError::NotFound)?;
            if membership.role == Role::Owner && role != Role::Owner && owners == 1 {
                return Err(MembershipError::LastOwner);
            }
            membership.role = role;
            Ok(())
        }))
    }

    fn remove_membership(
        &self,
        account: AccountId,
        user: UserId,
    ) -> impl Future<Output = Result<(), MembershipError>> + Send {
        ready(self.write(|state| {
            let owners =
                state.memberships.values().filter(|m| m.account_id == account && m.role == Role::Owner).count();
            let membership = state.memberships.get(&(account, user)).ok_or(MembershipError::NotFound)?;
            if membership.role == Role::Owner && owners == 1 {
                return Err(MembershipError::LastOwner);
            }
            state.memberships.remove(&(account, user));
            state.sessions.retain(|_, s| !(s.account_id == Some(account) && s.user_id == user));
            Ok(())
        }))
    }
}

impl SessionStore for MemStore {
    fn insert_session(&self, session: &Session) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.write(|state| state.sessions.insert(session.id, session.clone()));
        ready(Ok(()))
    }

    fn find_session(
        &self,
        token_hash: &[u8; 32],
    ) -> impl Future<Output = Result<Option<Session>, StorageError>> + Send {
        ready(Ok(self.read(|state| state.sessions.values().find(|s| &s.token_hash == token_hash).cloned())))
    }

    fn touch_session(
        &self,
        id: SessionId,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.write(|state| {
            if let Some(session) = state.sessions.get_mut(&id) {
                session.last_seen_at = session.last_seen_at.max(at);
            }
        });
        ready(Ok(()))
    }

    fn set_step_up(&self, id: SessionId, at: OffsetDateTime) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.write(|state| {
            if let Some(session) = state.sessions.get_mut(&id) {
                session.step_up_at = Some(at);
            }
        });
        ready(Ok(()))
    }

    fn delete_session(&self, id: SessionId) -> impl Future<Output = Result<Option<Session>, StorageError>> + Send {
        ready(Ok(self.write(|state| state.sessions.remove(&id))))
    }

    fn delete_sessions_of_user(
        &self,
        user: UserId,
        keep: Option<SessionId>,
    ) -> impl Future<Output = Result<usize, StorageError>> + Send {
        ready(Ok(self.write(|state| {
            let ended: Vec<SessionId> =
                state.sessions.values().filter(|s| s.user_id == user && Some(s.id) != keep).map(|s| s.id).collect();
            for id in &ended {
                state.sessions.remove(id);
            }
            ended.len()
        })))
    }
}
