//! `AuditStore` on PostgreSQL: per-account hash chains appended under an advisory lock,
//! and the retention purge through `keyward_audit_purge`.

use crate::*;

/// The newest (seq, hash) of a chain, served by the `(account_id, seq)` index read
/// backwards: `account_id = $1`, or `IS NULL` for the chain without an account, since
/// `IS NOT DISTINCT FROM` cannot use an index and would scan the whole table under the
/// chain's lock on every management call (`testing::explain_chain_head` shows the plan).
pub(crate) fn chain_head(
    account: Option<Uuid>,
) -> audit_events::BoxedQuery<'static, diesel::pg::Pg, (diesel::sql_types::BigInt, diesel::sql_types::Binary)> {
    let query = audit_events::table.select((audit_events::seq, audit_events::hash)).into_boxed();
    let query = match account {
        Some(account) => query.filter(audit_events::account_id.eq(account)),
        None => query.filter(audit_events::account_id.is_null()),
    };
    query.order(audit_events::seq.desc()).limit(1)
}

/// The advisory lock of a chain: the first 8 bytes of the account id (another fixed number
/// for the chain of events without an account).
fn chain_lock(account: Option<Uuid>) -> i64 {
    account.map_or(0x6b77_6175_6469_7400, |a| i64::from_be_bytes(a.as_bytes()[..8].try_into().unwrap_or_default()))
}

#[derive(diesel::QueryableByName)]
struct Purged {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    removed: i64,
}

impl AuditStore for PgStore {
    #[tracing::instrument(target = "keyward::otel", name = "store.append_audit", skip_all, fields(db.system.name = "postgresql"))]
    async fn append_audit(&self, event: &AuditEvent) -> Result<AuditRecord, StorageError> {
        let account = event.account_id.map(|a| a.as_uuid());
        let mut conn = self.conn().await?;
        conn.transaction::<_, DieselError, _>(async |conn| {
            // Appends to one chain are serialised; other chains proceed in parallel.
            diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
                .bind::<diesel::sql_types::BigInt, _>(chain_lock(account))
                .execute(conn)
                .await?;
            let head: Option<(i64, Vec<u8>)> = chain_head(account).first(conn).await.optional()?;
            let (seq, prev_hash) = match head {
                Some((seq, hash)) => (seq, hash.as_slice().try_into().unwrap_or([0; 32])),
                None => (0, [0; 32]),
            };
            let record =
                AuditRecord { event: event.clone(), seq: seq + 1, prev_hash, hash: chain_hash(&prev_hash, event) };
            diesel::insert_into(audit_events::table).values(&AuditRow::from(&record)).execute(conn).await?;
            Ok(record)
        })
        .await
        .map_err(db_error)
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.list_audit", skip_all, fields(db.system.name = "postgresql"))]
    async fn list_audit(
        &self,
        account: AccountId,
        filter: &AuditFilter,
        limit: u32,
        before: Option<AuditPosition>,
    ) -> Result<Vec<AuditRecord>, StorageError> {
        let mut query = audit_events::table.filter(audit_events::account_id.eq(account.as_uuid())).into_boxed();
        if let Some(before) = before {
            // (ts, id) < (before.ts, before.id), as the index (migration 000013) orders them.
            query = query.filter(
                audit_events::ts
                    .lt(before.ts)
                    .or(audit_events::ts.eq(before.ts).and(audit_events::id.lt(before.id.as_uuid()))),
            );
        }
        if let Some(key) = &filter.key_id {
            query = query.filter(audit_events::actor.eq(key.clone()).or(audit_events::resource_id.eq(key.clone())));
        }
        if let Some(actor) = &filter.actor_id {
            query = query.filter(audit_events::actor.eq(actor.clone()));
        }
        if let Some(kind) = &filter.resource_type {
            query = query.filter(audit_events::resource_type.eq(kind.clone()));
        }
        if let Some(id) = &filter.resource_id {
            query = query.filter(audit_events::resource_id.eq(id.clone()));
        }
        if let Some(action) = &filter.action {
            query = query.filter(audit_events::action.eq(action.clone()));
        }
        if let Some(result) = filter.result {
            query = query.filter(audit_events::result.eq(result.as_str()));
        }
        if let Some(since) = filter.since {
            query = query.filter(audit_events::ts.ge(since));
        }
        if let Some(until) = filter.until {
            query = query.filter(audit_events::ts.lt(until));
        }
        let mut conn = self.conn().await?;
        let rows: Vec<AuditRow> = query
            .order((audit_events::ts.desc(), audit_events::id.desc()))
            .limit(i64::from(limit))
            .select(AuditRow::as_select())
            .load(&mut conn)
            .await
            .map_err(db_error)?;
        rows.into_iter().map(AuditRecord::try_from).collect::<Result<_, _>>().map_err(corrupt)
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.audit_chain", skip_all, fields(db.system.name = "postgresql"))]
    async fn audit_chain(
        &self,
        account: Option<AccountId>,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StorageError> {
        let mut conn = self.conn().await?;
        let rows: Vec<AuditRow> = audit_events::table
            .filter(audit_events::account_id.is_not_distinct_from(account.map(|a| a.as_uuid())))
            .filter(audit_events::seq.gt(after_seq))
            .order(audit_events::seq.asc())
            .limit(i64::from(limit))
            .select(AuditRow::as_select())
            .load(&mut conn)
            .await
            .map_err(db_error)?;
        rows.into_iter().map(AuditRecord::try_from).collect::<Result<_, _>>().map_err(corrupt)
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.audit_chains", skip_all, fields(db.system.name = "postgresql"))]
    async fn audit_chains(&self) -> Result<Vec<Option<AccountId>>, StorageError> {
        let mut conn = self.conn().await?;
        let chains: Vec<Option<Uuid>> =
            audit_events::table.select(audit_events::account_id).distinct().load(&mut conn).await.map_err(db_error)?;
        Ok(chains.into_iter().map(|a| a.map(AccountId::from_uuid)).collect())
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.purge_audit", skip_all, fields(db.system.name = "postgresql"))]
    async fn purge_audit(&self, account: Option<AccountId>, before: OffsetDateTime) -> Result<u64, StorageError> {
        let mut conn = self.conn().await?;
        let purged: Purged = diesel::sql_query("SELECT keyward_audit_purge($1, $2) AS removed")
            .bind::<Nullable<diesel::sql_types::Uuid>, _>(account.map(|a| a.as_uuid()))
            .bind::<Timestamptz, _>(before)
            .get_result(&mut conn)
            .await
            .map_err(db_error)?;
        Ok(u64::try_from(purged.removed).unwrap_or(0))
    }
}
