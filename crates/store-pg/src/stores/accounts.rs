//! `AccountStore` and `KeyspaceStore` on PostgreSQL.

use crate::*;
use tracing::Instrument as _;

impl AccountStore for PgStore {
    fn create_account(
        &self,
        account: &Account,
        default_keyspace: &Keyspace,
        first_key: Option<&Key>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send {
        let account = AccountRow::from(account);
        let keyspace = KeyspaceRow::from(default_keyspace);
        let key = first_key.map(KeyRow::from);
        async move {
            let mut conn = self.conn().await?;
            conn.transaction::<_, DieselError, _>(async |conn| {
                diesel::insert_into(accounts::table).values(&account).execute(conn).await?;
                diesel::insert_into(keyspaces::table).values(&keyspace).execute(conn).await?;
                if let Some(key) = &key {
                    diesel::insert_into(keys::table).values(key).execute(conn).await?;
                    self.announce(conn, &[&key.hash]).await?;
                }
                Ok(())
            })
            .await
            .map_err(db_error)?;
            if let Some(key) = &key {
                self.evict_locally(&[&key.hash]).await;
            }
            Ok(())
        }
        .instrument(tracing::info_span!(target: "keyward::otel", "store.create_account", db.system.name = "postgresql"))
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.get_account", skip_all, fields(db.system.name = "postgresql"))]
    async fn get_account(&self, id: AccountId) -> Result<Option<Account>, StorageError> {
        let mut conn = self.conn().await?;
        let row: Option<AccountRow> = accounts::table
            .find(id.as_uuid())
            .select(AccountRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(db_error)?;
        row.map(Account::try_from).transpose().map_err(corrupt)
    }
}

impl KeyspaceStore for PgStore {
    fn insert_keyspace(&self, keyspace: &Keyspace) -> impl Future<Output = Result<(), InsertKeyspaceError>> + Send {
        let row = KeyspaceRow::from(keyspace);
        async move {
            let mut conn = self.conn().await?;
            match diesel::insert_into(keyspaces::table).values(&row).execute(&mut conn).await {
                Ok(_) => Ok(()),
                Err(e) if is_unique_violation(&e, "keyspaces_account_name_key") => {
                    Err(InsertKeyspaceError::DuplicateName)
                }
                Err(e) => Err(db_error(e).into()),
            }
        }
        .instrument(
            tracing::info_span!(target: "keyward::otel", "store.insert_keyspace", db.system.name = "postgresql"),
        )
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.get_keyspace", skip_all, fields(db.system.name = "postgresql"))]
    async fn get_keyspace(&self, account: AccountId, id: KeyspaceId) -> Result<Option<Keyspace>, StorageError> {
        let mut conn = self.conn().await?;
        let row: Option<KeyspaceRow> = keyspaces::table
            .filter(keyspaces::id.eq(id.as_uuid()))
            .filter(keyspaces::account_id.eq(account.as_uuid()))
            .select(KeyspaceRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(db_error)?;
        row.map(Keyspace::try_from).transpose().map_err(corrupt)
    }

    fn find_keyspace_by_name(
        &self,
        account: AccountId,
        name: &str,
    ) -> impl Future<Output = Result<Option<Keyspace>, StorageError>> + Send {
        let name = name.to_owned();
        async move {
            let mut conn = self.conn().await?;
            let row: Option<KeyspaceRow> = keyspaces::table
                .filter(keyspaces::account_id.eq(account.as_uuid()))
                .filter(keyspaces::name.eq(name))
                .select(KeyspaceRow::as_select())
                .first(&mut conn)
                .await
                .optional()
                .map_err(db_error)?;
            row.map(Keyspace::try_from).transpose().map_err(corrupt)
        }
        .instrument(
            tracing::info_span!(target: "keyward::otel", "store.find_keyspace_by_name", db.system.name = "postgresql"),
        )
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.list_keyspaces", skip_all, fields(db.system.name = "postgresql"))]
    async fn list_keyspaces(&self, account: AccountId) -> Result<Vec<Keyspace>, StorageError> {
        let mut conn = self.conn().await?;
        let rows: Vec<KeyspaceRow> = keyspaces::table
            .filter(keyspaces::account_id.eq(account.as_uuid()))
            .order(keyspaces::id.asc())
            .select(KeyspaceRow::as_select())
            .load(&mut conn)
            .await
            .map_err(db_error)?;
        rows.into_iter().map(Keyspace::try_from).collect::<Result<_, _>>().map_err(corrupt)
    }

    fn update_keyspace(&self, keyspace: &Keyspace) -> impl Future<Output = Result<(), UpdateKeyspaceError>> + Send {
        let row = KeyspaceRow::from(keyspace);
        async move {
            let mut conn = self.conn().await?;
            let result = diesel::update(keyspaces::table)
                .filter(keyspaces::id.eq(row.id))
                .filter(keyspaces::account_id.eq(row.account_id))
                .set((
                    keyspaces::name.eq(&row.name),
                    keyspaces::prefix.eq(&row.prefix),
                    keyspaces::default_tier.eq(&row.default_tier),
                    keyspaces::default_scopes.eq(&row.default_scopes),
                    keyspaces::allowed_scopes.eq(&row.allowed_scopes),
                    keyspaces::ip_policy.eq(&row.ip_policy),
                    keyspaces::leak_policy.eq(&row.leak_policy),
                    keyspaces::updated_at.eq(row.updated_at),
                ))
                .execute(&mut conn)
                .await;
            match result {
                Ok(0) => Err(UpdateKeyspaceError::NotFound),
                Ok(_) => Ok(()),
                Err(e) if is_unique_violation(&e, "keyspaces_account_name_key") => {
                    Err(UpdateKeyspaceError::DuplicateName)
                }
                Err(e) => Err(db_error(e).into()),
            }
        }
        .instrument(
            tracing::info_span!(target: "keyward::otel", "store.update_keyspace", db.system.name = "postgresql"),
        )
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.delete_keyspace", skip_all, fields(db.system.name = "postgresql"))]
    async fn delete_keyspace(
        &self,
        account: AccountId,
        id: KeyspaceId,
        now: OffsetDateTime,
    ) -> Result<(), DeleteKeyspaceError> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, TxError<DeleteKeyspaceError>, _>(async |conn| {
            // Locking the keyspace row makes a concurrent key creation in it wait for us
            // (its foreign key check needs a share lock on the same row).
            if !lock_keyspace(conn, account, id).await? {
                return Err(TxError::Domain(DeleteKeyspaceError::NotFound));
            }
            let live: i64 = keys::table
                .filter(keys::keyspace_id.eq(id.as_uuid()))
                .filter(keys::revoked_at.is_null())
                .filter(expired_at(now).eq(false))
                .count()
                .get_result(conn)
                .await?;
            if live > 0 {
                return Err(TxError::Domain(DeleteKeyspaceError::NotEmpty));
            }
            let gone: Vec<Vec<u8>> = diesel::delete(keys::table.filter(keys::keyspace_id.eq(id.as_uuid())))
                .returning(keys::hash)
                .get_results(conn)
                .await?;
            self.announce(conn, &gone.iter().map(Vec::as_slice).collect::<Vec<_>>()).await?;
            diesel::delete(keyspaces::table.filter(keyspaces::id.eq(id.as_uuid()))).execute(conn).await?;
            self.announce_gate(conn, id.as_uuid()).await?;
            Ok(())
        })
        .await
        .map_err(TxError::into_domain)
    }
}

/// Locks the account's keyspace row for the transaction on `conn`; `false`: no such
/// keyspace in the account.
pub(crate) async fn lock_keyspace(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    id: KeyspaceId,
) -> QueryResult<bool> {
    let found = keyspaces::table
        .filter(keyspaces::id.eq(id.as_uuid()))
        .filter(keyspaces::account_id.eq(account.as_uuid()))
        .select(keyspaces::id)
        .for_update()
        .first::<Uuid>(conn)
        .await
        .optional()?;
    Ok(found.is_some())
}
