//! `KeyStore` on PostgreSQL: keys by hash (through the cache), by id and by filter, and
//! every change announced to the other instances' caches.

use crate::*;
use tracing::Instrument as _;

/// `true` when the key is past `expires_at` or idle past its timeout at `now`; mirrors
/// `Key::status`, so listing by status agrees with what verification would answer.
pub(crate) fn expired_at(
    now: OffsetDateTime,
) -> diesel::expression::SqlLiteral<Bool, impl diesel::query_builder::QueryFragment<Pg> + Send> {
    sql::<Bool>("(COALESCE(keys.expires_at <= ")
        .bind::<Timestamptz, _>(now)
        .sql(", false) OR COALESCE(COALESCE(keys.last_used_at, keys.created_at) + make_interval(secs => keys.idle_timeout_seconds) <= ")
        .bind::<Timestamptz, _>(now)
        .sql(", false))")
}

type BoxedKeys<'a> = keys::BoxedQuery<'a, Pg>;

fn filtered_keys<'a>(account: AccountId, filter: &'a KeyFilter, now: OffsetDateTime) -> BoxedKeys<'a> {
    let mut query = keys::table
        .filter(keys::account_id.eq(account.as_uuid()))
        .filter(keys::kind.eq(filter.kind.as_str()))
        .into_boxed();
    if let Some(ks) = filter.keyspace_id {
        query = query.filter(keys::keyspace_id.eq(ks.as_uuid()));
    }
    if let Some(env) = filter.environment {
        query = query.filter(keys::environment.eq(env.as_str()));
    }
    if let Some(owner) = &filter.owner_id {
        query = query.filter(keys::owner_id.eq(owner));
    }
    match filter.status {
        None => {}
        Some(KeyStatus::Revoked) => query = query.filter(keys::revoked_at.is_not_null()),
        Some(KeyStatus::Expired) => query = query.filter(keys::revoked_at.is_null()).filter(expired_at(now)),
        Some(KeyStatus::Inactive) => {
            query = query
                .filter(keys::revoked_at.is_null())
                .filter(expired_at(now).eq(false))
                .filter(keys::is_active.eq(false));
        }
        Some(KeyStatus::Active) => {
            query = query
                .filter(keys::revoked_at.is_null())
                .filter(expired_at(now).eq(false))
                .filter(keys::is_active.eq(true));
        }
    }
    query
}

/// Active service keys: neither revoked nor past `expires_at` (what `max_keys` limits).
async fn count_active(conn: &mut AsyncPgConnection, account: Uuid, now: OffsetDateTime) -> QueryResult<i64> {
    keys::table
        .filter(keys::account_id.eq(account))
        .filter(keys::kind.eq(KeyKind::Service.as_str()))
        .filter(keys::revoked_at.is_null())
        .filter(keys::expires_at.is_null().or(keys::expires_at.gt(now)))
        .count()
        .get_result(conn)
        .await
}

impl KeyStore for PgStore {
    fn insert_keys(
        &self,
        new_keys: &[Key],
        max_keys: Option<u64>,
    ) -> impl Future<Output = Result<(), InsertKeyError>> + Send {
        let rows: Vec<KeyRow> = new_keys.iter().map(KeyRow::from).collect();
        let first = new_keys.first().map(|k| (k.account_id.as_uuid(), k.created_at));
        let adding = new_keys.iter().filter(|k| k.kind == KeyKind::Service).count() as u64;
        async move {
            let Some((account, now)) = first else { return Ok(()) };
            let mut conn = self.conn().await?;
            let result = conn
                .transaction::<_, TxError<InsertKeyError>, _>(async |conn| {
                    // Serialises key creation per account, so two concurrent inserts
                    // cannot both slip under the limit. NO KEY UPDATE: foreign-key checks of
                    // other tables (idempotency claims, sessions) need not wait for it.
                    accounts::table.find(account).select(accounts::id).for_no_key_update().first::<Uuid>(conn).await?;
                    let hashes: Vec<&Vec<u8>> = rows.iter().map(|r| &r.hash).collect();
                    let clashing: Vec<Vec<u8>> =
                        keys::table.filter(keys::hash.eq_any(hashes)).select(keys::hash).load(conn).await?;
                    if let Some(index) = rows.iter().position(|r| clashing.contains(&r.hash)) {
                        return Err(TxError::Domain(InsertKeyError::DuplicateHash { index }));
                    }
                    if let Some(max) = max_keys {
                        let active = u64::try_from(count_active(conn, account, now).await?).unwrap_or(0);
                        if active + adding > max {
                            return Err(TxError::Domain(InsertKeyError::KeyLimitReached));
                        }
                    }
                    diesel::insert_into(keys::table).values(&rows).execute(conn).await?;
                    // "No such key" may be cached for these hashes.
                    let hashes: Vec<&[u8]> = rows.iter().map(|r| r.hash.as_slice()).collect();
                    self.announce(conn, &hashes).await?;
                    Ok(())
                })
                .await;
            if result.is_ok() {
                let hashes: Vec<&[u8]> = rows.iter().map(|r| r.hash.as_slice()).collect();
                self.evict_locally(&hashes).await;
            }
            match result {
                Ok(()) => Ok(()),
                // A concurrent insert of the same hash won the race after our check.
                Err(TxError::Db(e)) if is_unique_violation(&e, "keys_hash_key") => {
                    Err(InsertKeyError::DuplicateHash { index: 0 })
                }
                Err(e) => Err(e.into_domain()),
            }
        }
        .instrument(tracing::info_span!(target: "keyward::otel", "store.insert_keys", db.system.name = "postgresql"))
    }

    fn find_by_hash(
        &self,
        hash: &KeyHash,
    ) -> impl Future<Output = Result<Option<Arc<VerifiableKey>>, StorageError>> + Send {
        let bytes = hash.to_bytes();
        async move {
            // The load's future is large (~12 KiB: a diesel query): on the heap, and built
            // only on a miss, so that a hit's future — and every future awaiting it, up to
            // the HTTP handler's — stays small and cheap to move.
            match &self.cache {
                None => Ok(Box::pin(self.load_by_hash(bytes)).await?.map(Arc::new)),
                // A hit hands out the cached record itself, shared.
                Some(cache) => {
                    // For the verification's span, if there is one: hit or miss, never the key.
                    let span = tracing::Span::current();
                    let found = match cache.get(bytes).await {
                        Some(hit) => {
                            cache.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            span.record("keyward.cache", "hit");
                            hit
                        }
                        None => {
                            cache.misses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            span.record("keyward.cache", "miss");
                            Box::pin(cache.get_or_load(bytes, self.load_by_hash(bytes)))
                                .await
                                .map_err(|e| shared_error(&e))?
                        }
                    };
                    if let Some(claim) = found.refresh {
                        // In the background: this request answers from the entry it has.
                        let store = self.clone();
                        tokio::spawn(async move { KeyCache::refresh(claim, store.load_by_hash(bytes)).await });
                    }
                    Ok(found.entry)
                }
            }
        }
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.get_key", skip_all, fields(db.system.name = "postgresql"))]
    async fn get_key(&self, account: AccountId, id: KeyId) -> Result<Option<Key>, StorageError> {
        let mut conn = self.conn().await?;
        let row: Option<KeyRow> = keys::table
            .filter(keys::id.eq(id.as_uuid()))
            .filter(keys::account_id.eq(account.as_uuid()))
            .select(KeyRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(db_error)?;
        row.map(Key::try_from).transpose().map_err(corrupt)
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.list_keys", skip_all, fields(db.system.name = "postgresql"))]
    async fn list_keys(
        &self,
        account: AccountId,
        filter: &KeyFilter,
        page: PageRequest,
        now: OffsetDateTime,
    ) -> Result<KeyPage, StorageError> {
        let mut conn = self.conn().await?;
        let total: i64 = filtered_keys(account, filter, now).count().get_result(&mut conn).await.map_err(db_error)?;
        let mut query = filtered_keys(account, filter, now);
        if let Some(before) = page.before {
            query = query.filter(keys::id.lt(before.as_uuid()));
        }
        let rows: Vec<KeyRow> = query
            .order(keys::id.desc())
            .limit(i64::from(page.limit) + 1)
            .select(KeyRow::as_select())
            .load(&mut conn)
            .await
            .map_err(db_error)?;
        let has_more = rows.len() > page.limit as usize;
        let keys =
            rows.into_iter().take(page.limit as usize).map(Key::try_from).collect::<Result<_, _>>().map_err(corrupt)?;
        Ok(KeyPage { keys, total: u64::try_from(total).unwrap_or(0), has_more })
    }

    fn update_key(&self, before: &Key, after: &Key) -> impl Future<Output = Result<(), UpdateError>> + Send {
        let (read, row) = (KeyRow::from(before), KeyRow::from(after));
        async move {
            let mut conn = self.conn().await?;
            // `revoked_at` is only ever set, never cleared or moved: a writer holding a copy
            // read before a revocation cannot undo it.
            let keep_first_revocation = sql::<Nullable<Timestamptz>>("COALESCE(keys.revoked_at, ")
                .bind::<Nullable<Timestamptz>, _>(row.revoked_at)
                .sql(")");
            let updated = diesel::update(keys::table)
                .filter(keys::id.eq(row.id))
                .filter(keys::account_id.eq(row.account_id))
                .set((KeyChanges::between(&read, &row), keys::revoked_at.eq(keep_first_revocation)))
                .execute(&mut conn)
                .await
                .map_err(db_error)?;
            if updated == 0 {
                return Err(UpdateError::NotFound);
            }
            self.announce(&mut conn, &[&row.hash]).await.map_err(db_error)?;
            self.evict_locally(&[&row.hash]).await;
            Ok(())
        }
        .instrument(tracing::info_span!(target: "keyward::otel", "store.update_key", db.system.name = "postgresql"))
    }

    fn rotate_key(&self, old: &Key, new: &Key) -> impl Future<Output = Result<(), UpdateError>> + Send {
        let (old_id, account) = (old.id.as_uuid(), old.account_id.as_uuid());
        let (expires_at, rotated_to, updated_at) =
            (old.expires_at, old.rotated_to.map(|id| id.as_uuid()), old.updated_at);
        let new_row = KeyRow::from(new);
        let old_hash = old.hash.to_bytes();
        async move {
            let mut conn = self.conn().await?;
            let hashes: [&[u8]; 2] = [&old_hash, &new_row.hash];
            conn.transaction::<_, TxError<UpdateError>, _>(async |conn| {
                let updated = diesel::update(keys::table)
                    .filter(keys::id.eq(old_id))
                    .filter(keys::account_id.eq(account))
                    .filter(keys::revoked_at.is_null())
                    .set((
                        keys::expires_at.eq(expires_at),
                        keys::rotated_to.eq(rotated_to),
                        keys::updated_at.eq(updated_at),
                    ))
                    .execute(conn)
                    .await?;
                if updated == 0 {
                    return Err(TxError::Domain(UpdateError::NotFound));
                }
                diesel::insert_into(keys::table).values(&new_row).execute(conn).await?;
                self.announce(conn, &hashes).await?;
                Ok(())
            })
            .await
            .map_err(TxError::into_domain)?;
            self.evict_locally(&hashes).await;
            Ok(())
        }
        .instrument(tracing::info_span!(target: "keyward::otel", "store.rotate_key", db.system.name = "postgresql"))
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.touch_key", skip_all, fields(db.system.name = "postgresql"))]
    async fn touch_key(&self, id: KeyId, at: OffsetDateTime) -> Result<(), StorageError> {
        let mut conn = self.conn().await?;
        let touched: Vec<Vec<u8>> = diesel::update(keys::table)
            .filter(keys::id.eq(id.as_uuid()))
            .filter(keys::last_used_at.is_null().or(keys::last_used_at.lt(at)))
            .set(keys::last_used_at.eq(at))
            .returning(keys::hash)
            .get_results(&mut conn)
            .await
            .map_err(db_error)?;
        let hashes: Vec<&[u8]> = touched.iter().map(Vec::as_slice).collect();
        self.announce(&mut conn, &hashes).await.map_err(db_error)?;
        self.evict_locally(&hashes).await;
        Ok(())
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.list_account_keys", skip_all, fields(db.system.name = "postgresql"))]
    async fn list_account_keys(&self, account: AccountId) -> Result<Vec<Key>, StorageError> {
        let mut conn = self.conn().await?;
        let rows: Vec<KeyRow> = keys::table
            .filter(keys::account_id.eq(account.as_uuid()))
            .filter(keys::kind.ne(KeyKind::Service.as_str()))
            .order(keys::id.desc())
            .limit(1_000)
            .select(KeyRow::as_select())
            .load(&mut conn)
            .await
            .map_err(db_error)?;
        rows.into_iter().map(Key::try_from).collect::<Result<_, _>>().map_err(corrupt)
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.live_temporary_keys", skip_all, fields(db.system.name = "postgresql"))]
    async fn live_temporary_keys(
        &self,
        account: AccountId,
        user: UserId,
        now: OffsetDateTime,
    ) -> Result<Vec<Key>, StorageError> {
        let mut conn = self.conn().await?;
        let rows: Vec<KeyRow> = keys::table
            .filter(keys::account_id.eq(account.as_uuid()))
            .filter(keys::kind.eq(KeyKind::Temporary.as_str()))
            .filter(keys::created_by.eq(keyward_domain::key::Actor::User(user).to_string()))
            .filter(keys::revoked_at.is_null())
            .filter(keys::expires_at.is_null().or(keys::expires_at.gt(now)))
            .select(KeyRow::as_select())
            .load(&mut conn)
            .await
            .map_err(db_error)?;
        rows.into_iter().map(Key::try_from).collect::<Result<_, _>>().map_err(corrupt)
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.count_account_keys", skip_all, fields(db.system.name = "postgresql"))]
    async fn count_account_keys(&self, account: AccountId, now: OffsetDateTime) -> Result<u64, StorageError> {
        let mut conn = self.conn().await?;
        let count: i64 = keys::table
            .filter(keys::account_id.eq(account.as_uuid()))
            .filter(keys::kind.ne(KeyKind::Service.as_str()))
            .filter(keys::revoked_at.is_null())
            .filter(keys::expires_at.is_null().or(keys::expires_at.gt(now)))
            .count()
            .get_result(&mut conn)
            .await
            .map_err(db_error)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.count_keys", skip_all, fields(db.system.name = "postgresql"))]
    async fn count_keys(&self, account: AccountId, now: OffsetDateTime) -> Result<KeyCounts, StorageError> {
        let mut conn = self.conn().await?;
        let active = count_active(&mut conn, account.as_uuid(), now).await.map_err(db_error)?;
        let revoked: i64 = keys::table
            .filter(keys::account_id.eq(account.as_uuid()))
            .filter(keys::kind.eq(KeyKind::Service.as_str()))
            .filter(keys::revoked_at.is_not_null())
            .count()
            .get_result(&mut conn)
            .await
            .map_err(db_error)?;
        Ok(KeyCounts { active: u64::try_from(active).unwrap_or(0), revoked: u64::try_from(revoked).unwrap_or(0) })
    }
}
