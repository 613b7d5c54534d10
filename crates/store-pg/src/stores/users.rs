//! `UserStore` on PostgreSQL: users, memberships (the last owner stays, under a row lock)
//! and invitations.

use crate::*;
use keyward_domain::{Actor, InvitationId};

/// Locks the account's owner memberships and counts them: a concurrent demotion or removal
/// waits, so two of them cannot both leave the account without an owner.
async fn locked_owner_count(conn: &mut AsyncPgConnection, account: Uuid) -> QueryResult<usize> {
    let owners: Vec<Uuid> = memberships::table
        .filter(memberships::account_id.eq(account))
        .filter(memberships::role.eq(Role::Owner.as_str()))
        .select(memberships::user_id)
        .for_update()
        .load(conn)
        .await?;
    Ok(owners.len())
}

async fn current_role(conn: &mut AsyncPgConnection, account: Uuid, user: Uuid) -> QueryResult<Option<String>> {
    memberships::table
        .find((account, user))
        .select(memberships::role)
        .for_update()
        .first::<String>(conn)
        .await
        .optional()
}

impl UserStore for PgStore {
    #[tracing::instrument(target = "keyward::otel", name = "store.create_user", skip_all, fields(db.system.name = "postgresql"))]
    async fn create_user(&self, user: &User, membership: Option<&Membership>) -> Result<(), CreateUserError> {
        let user_row = UserRow::from(user);
        let membership_row = membership.map(MembershipRow::from);
        let mut conn = self.conn().await?;
        let result = conn
            .transaction::<_, DieselError, _>(async |conn| {
                diesel::insert_into(users::table).values(&user_row).execute(conn).await?;
                if let Some(m) = &membership_row {
                    diesel::insert_into(memberships::table).values(m).execute(conn).await?;
                }
                Ok(())
            })
            .await;
        match result {
            Ok(()) => Ok(()),
            Err(e) if is_unique_violation(&e, "users_email_key") => Err(CreateUserError::DuplicateEmail),
            Err(e) => Err(db_error(e).into()),
        }
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.find_user_by_email", skip_all, fields(db.system.name = "postgresql"))]
    async fn find_user_by_email(&self, email: &Email) -> Result<Option<User>, StorageError> {
        let mut conn = self.conn().await?;
        let row: Option<UserRow> = users::table
            .filter(users::email.eq(email.as_str()))
            .select(UserRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(db_error)?;
        row.map(User::try_from).transpose().map_err(corrupt)
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.get_user", skip_all, fields(db.system.name = "postgresql"))]
    async fn get_user(&self, id: UserId) -> Result<Option<User>, StorageError> {
        let mut conn = self.conn().await?;
        let row: Option<UserRow> = users::table
            .find(id.as_uuid())
            .select(UserRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(db_error)?;
        row.map(User::try_from).transpose().map_err(corrupt)
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.set_password_hash", skip_all, fields(db.system.name = "postgresql"))]
    async fn set_password_hash(
        &self,
        id: UserId,
        hash: &PasswordHash,
        change_required: bool,
        at: OffsetDateTime,
    ) -> Result<(), UpdateError> {
        let mut conn = self.conn().await?;
        let updated = diesel::update(users::table.find(id.as_uuid()))
            .set((
                users::password_hash.eq(hash.as_phc()),
                users::password_change_required.eq(change_required),
                users::updated_at.eq(at),
            ))
            .execute(&mut conn)
            .await
            .map_err(db_error)?;
        if updated == 0 { Err(UpdateError::NotFound) } else { Ok(()) }
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.memberships_of", skip_all, fields(db.system.name = "postgresql"))]
    async fn memberships_of(&self, user: UserId) -> Result<Vec<(Membership, String)>, StorageError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(MembershipRow, String)> = memberships::table
            .inner_join(accounts::table)
            .filter(memberships::user_id.eq(user.as_uuid()))
            .order((memberships::created_at.asc(), memberships::account_id.asc()))
            .select((MembershipRow::as_select(), accounts::name))
            .load(&mut conn)
            .await
            .map_err(db_error)?;
        rows.into_iter()
            .map(|(m, name)| Membership::try_from(m).map(|m| (m, name)))
            .collect::<Result<_, _>>()
            .map_err(corrupt)
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.get_membership", skip_all, fields(db.system.name = "postgresql"))]
    async fn get_membership(&self, account: AccountId, user: UserId) -> Result<Option<Membership>, StorageError> {
        let mut conn = self.conn().await?;
        let row: Option<MembershipRow> = memberships::table
            .find((account.as_uuid(), user.as_uuid()))
            .select(MembershipRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(db_error)?;
        row.map(Membership::try_from).transpose().map_err(corrupt)
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.members", skip_all, fields(db.system.name = "postgresql"))]
    async fn members(&self, account: AccountId) -> Result<Vec<(User, Membership)>, StorageError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(UserRow, MembershipRow)> = memberships::table
            .inner_join(users::table)
            .filter(memberships::account_id.eq(account.as_uuid()))
            .order((memberships::created_at.asc(), memberships::user_id.asc()))
            .select((UserRow::as_select(), MembershipRow::as_select()))
            .load(&mut conn)
            .await
            .map_err(db_error)?;
        rows.into_iter()
            .map(|(u, m)| Ok((User::try_from(u)?, Membership::try_from(m)?)))
            .collect::<Result<_, CorruptRow>>()
            .map_err(corrupt)
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.add_membership", skip_all, fields(db.system.name = "postgresql"))]
    async fn add_membership(&self, membership: &Membership) -> Result<(), MembershipError> {
        let row = MembershipRow::from(membership);
        let mut conn = self.conn().await?;
        match diesel::insert_into(memberships::table).values(&row).execute(&mut conn).await {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e, "memberships_pkey") => Err(MembershipError::Duplicate),
            Err(e) => Err(db_error(e).into()),
        }
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.invite", skip_all, fields(db.system.name = "postgresql"))]
    async fn invite(&self, invitation: &Invitation) -> Result<(), MembershipError> {
        let row = InvitationRow::from(invitation);
        let mut conn = self.conn().await?;
        conn.transaction::<_, TxError<MembershipError>, _>(async |conn| {
            let member: i64 = memberships::table
                .inner_join(users::table)
                .filter(memberships::account_id.eq(row.account_id))
                .filter(users::email.eq(&row.email))
                .count()
                .get_result(conn)
                .await?;
            if member > 0 {
                return Err(TxError::Domain(MembershipError::Duplicate));
            }
            diesel::insert_into(invitations::table)
                .values(&row)
                .on_conflict((invitations::account_id, invitations::email))
                .do_update()
                .set((
                    invitations::id.eq(row.id),
                    invitations::role.eq(&row.role),
                    invitations::invited_by.eq(&row.invited_by),
                    invitations::token_hash.eq(&row.token_hash),
                    invitations::created_at.eq(row.created_at),
                    invitations::expires_at.eq(row.expires_at),
                ))
                .execute(conn)
                .await?;
            Ok(())
        })
        .await
        .map_err(TxError::into_domain)
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.find_invitation", skip_all, fields(db.system.name = "postgresql"))]
    async fn find_invitation(&self, token_hash: &[u8; 32]) -> Result<Option<(Invitation, String)>, StorageError> {
        let mut conn = self.conn().await?;
        let row: Option<(InvitationRow, String)> = invitations::table
            .inner_join(accounts::table)
            .filter(invitations::token_hash.eq(&token_hash[..]))
            .select((InvitationRow::as_select(), accounts::name))
            .first(&mut conn)
            .await
            .optional()
            .map_err(db_error)?;
        row.map(|(i, name)| Invitation::try_from(i).map(|i| (i, name))).transpose().map_err(corrupt)
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.take_invitation", skip_all, fields(db.system.name = "postgresql"))]
    async fn take_invitation(&self, id: InvitationId) -> Result<Option<Invitation>, StorageError> {
        let mut conn = self.conn().await?;
        let row: Option<InvitationRow> = diesel::delete(invitations::table.find(id.as_uuid()))
            .returning(InvitationRow::as_returning())
            .get_result(&mut conn)
            .await
            .optional()
            .map_err(db_error)?;
        row.map(Invitation::try_from).transpose().map_err(corrupt)
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.invitations_to", skip_all, fields(db.system.name = "postgresql"))]
    async fn invitations_to(&self, email: &Email) -> Result<Vec<(Invitation, String)>, StorageError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(InvitationRow, String)> = invitations::table
            .inner_join(accounts::table)
            .filter(invitations::email.eq(email.as_str()))
            .order((invitations::created_at.asc(), invitations::id.asc()))
            .select((InvitationRow::as_select(), accounts::name))
            .load(&mut conn)
            .await
            .map_err(db_error)?;
        rows.into_iter()
            .map(|(i, name)| Invitation::try_from(i).map(|i| (i, name)))
            .collect::<Result<_, _>>()
            .map_err(corrupt)
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.invitations_from", skip_all, fields(db.system.name = "postgresql"))]
    async fn invitations_from(&self, account: AccountId) -> Result<Vec<Invitation>, StorageError> {
        let mut conn = self.conn().await?;
        let rows: Vec<InvitationRow> = invitations::table
            .filter(invitations::account_id.eq(account.as_uuid()))
            .order((invitations::created_at.asc(), invitations::id.asc()))
            .select(InvitationRow::as_select())
            .load(&mut conn)
            .await
            .map_err(db_error)?;
        rows.into_iter().map(Invitation::try_from).collect::<Result<_, _>>().map_err(corrupt)
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.withdraw_invitations_by", skip_all, fields(db.system.name = "postgresql"))]
    async fn withdraw_invitations_by(
        &self,
        account: AccountId,
        actor: &Actor,
    ) -> Result<Vec<Invitation>, StorageError> {
        let mut conn = self.conn().await?;
        let rows: Vec<InvitationRow> = diesel::delete(
            invitations::table
                .filter(invitations::account_id.eq(account.as_uuid()))
                .filter(invitations::invited_by.eq(actor.to_string())),
        )
        .returning(InvitationRow::as_returning())
        .get_results(&mut conn)
        .await
        .map_err(db_error)?;
        let mut taken: Vec<Invitation> =
            rows.into_iter().map(Invitation::try_from).collect::<Result<_, _>>().map_err(corrupt)?;
        taken.sort_by_key(|i| (i.created_at, i.id));
        Ok(taken)
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.set_role", skip_all, fields(db.system.name = "postgresql"))]
    async fn set_role(&self, account: AccountId, user: UserId, role: Role) -> Result<(), MembershipError> {
        let (account, user) = (account.as_uuid(), user.as_uuid());
        let mut conn = self.conn().await?;
        conn.transaction::<_, TxError<MembershipError>, _>(async |conn| {
            let owners = locked_owner_count(conn, account).await?;
            let current = current_role(conn, account, user).await?.ok_or(TxError::Domain(MembershipError::NotFound))?;
            if current == Role::Owner.as_str() && role != Role::Owner && owners <= 1 {
                return Err(TxError::Domain(MembershipError::LastOwner));
            }
            diesel::update(memberships::table.find((account, user)))
                .set(memberships::role.eq(role.as_str()))
                .execute(conn)
                .await?;
            Ok(())
        })
        .await
        .map_err(TxError::into_domain)
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.remove_membership", skip_all, fields(db.system.name = "postgresql"))]
    async fn remove_membership(&self, account: AccountId, user: UserId) -> Result<(), MembershipError> {
        let (account, user) = (account.as_uuid(), user.as_uuid());
        let mut conn = self.conn().await?;
        conn.transaction::<_, TxError<MembershipError>, _>(async |conn| {
            let owners = locked_owner_count(conn, account).await?;
            let current = current_role(conn, account, user).await?.ok_or(TxError::Domain(MembershipError::NotFound))?;
            if current == Role::Owner.as_str() && owners <= 1 {
                return Err(TxError::Domain(MembershipError::LastOwner));
            }
            diesel::delete(memberships::table.find((account, user))).execute(conn).await?;
            diesel::delete(
                sessions::table.filter(sessions::account_id.eq(Some(account))).filter(sessions::user_id.eq(user)),
            )
            .execute(conn)
            .await?;
            Ok(())
        })
        .await
        .map_err(TxError::into_domain)
    }
}
