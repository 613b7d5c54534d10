//! `IdempotencyStore` on PostgreSQL.

use crate::*;

/// A key's fingerprint, status and sealed body, as stored.
type HeldKey = (Vec<u8>, Option<i16>, Option<Vec<u8>>);

#[derive(diesel::QueryableByName)]
struct ClaimedRow {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    claimed: bool,
}

impl IdempotencyStore for PgStore {
    #[tracing::instrument(target = "keyward::otel", name = "store.claim_idempotency", skip_all, fields(db.system.name = "postgresql"))]
    async fn claim_idempotency(
        &self,
        account: AccountId,
        key: &str,
        fingerprint: [u8; 32],
        now: OffsetDateTime,
    ) -> Result<Claim, StorageError> {
        // Inside a unit of work the claim joins the unit: it becomes visible when the call
        // commits, together with its response, and vanishes if the call rolls back. Another
        // request with the same key meanwhile meets the uncommitted row in the unique index;
        // rather than wait for it, it gives up after a moment and answers "in use". So every
        // request holds one connection at most, and a crashed request frees its key at once.
        let mut conn = self.conn().await?;
        for _ in 0..3 {
            let attempt = conn
                .transaction::<_, DieselError, _>(async |conn| {
                    conn.batch_execute("SET LOCAL lock_timeout = '200ms'").await?;
                    let claimed: Vec<ClaimedRow> = diesel::sql_query(
                        "INSERT INTO idempotency_keys (account_id, key, fingerprint, created_at, lease_until) \
                         VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (account_id, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, \
                           created_at = EXCLUDED.created_at, lease_until = EXCLUDED.lease_until, status = NULL, body = NULL \
                         WHERE idempotency_keys.created_at <= $6 \
                            OR (idempotency_keys.status IS NULL AND idempotency_keys.lease_until <= $4) \
                         RETURNING true AS claimed",
                    )
                    .bind::<diesel::sql_types::Uuid, _>(account.as_uuid())
                    .bind::<diesel::sql_types::Text, _>(key)
                    .bind::<diesel::sql_types::Bytea, _>(fingerprint.as_slice())
                    .bind::<Timestamptz, _>(now)
                    .bind::<Timestamptz, _>(now + LEASE)
                    .bind::<Timestamptz, _>(now - RETENTION)
                    .load(conn)
                    .await?;
                    Ok(claimed.iter().any(|c| c.claimed))
                })
                .await;
            let claimed = match attempt {
                Ok(claimed) => claimed,
                // 55P03: the key is held by a request that has not committed yet.
                Err(DieselError::DatabaseError(_, info)) if info.message().contains("lock timeout") => {
                    return Ok(Claim::InFlight { fingerprint });
                }
                Err(e) => return Err(db_error(e)),
            };
            if claimed {
                return Ok(Claim::Claimed);
            }
            let held: Option<HeldKey> = idempotency_keys::table
                .find((account.as_uuid(), key))
                .select((idempotency_keys::fingerprint, idempotency_keys::status, idempotency_keys::body))
                .first(&mut *conn)
                .await
                .optional()
                .map_err(db_error)?;
            // Gone between the two statements (released or purged): try again.
            let Some((stored_fingerprint, status, body)) = held else { continue };
            let stored_fingerprint: [u8; 32] = stored_fingerprint.as_slice().try_into().unwrap_or([0; 32]);
            return Ok(match status {
                Some(status) => Claim::Completed {
                    fingerprint: stored_fingerprint,
                    response: StoredResponse {
                        status: u16::try_from(status).unwrap_or(500),
                        sealed_body: body.unwrap_or_default(),
                    },
                },
                None => Claim::InFlight { fingerprint: stored_fingerprint },
            });
        }
        Err(StorageError::Internal("an idempotency key kept changing under its claim".into()))
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.complete_idempotency", skip_all, fields(db.system.name = "postgresql"))]
    async fn complete_idempotency(
        &self,
        account: AccountId,
        key: &str,
        fingerprint: [u8; 32],
        now: OffsetDateTime,
        response: &StoredResponse,
    ) -> Result<(), StorageError> {
        // An upsert: after a rolled-back call its claim is gone, and a kept refusal is
        // written afresh.
        let mut conn = self.conn().await?;
        diesel::insert_into(idempotency_keys::table)
            .values((
                idempotency_keys::account_id.eq(account.as_uuid()),
                idempotency_keys::key.eq(key),
                idempotency_keys::fingerprint.eq(fingerprint.as_slice()),
                idempotency_keys::created_at.eq(now),
                idempotency_keys::status.eq(i16::try_from(response.status).unwrap_or(i16::MAX)),
                idempotency_keys::body.eq(&response.sealed_body),
            ))
            .on_conflict((idempotency_keys::account_id, idempotency_keys::key))
            .do_update()
            .set((
                idempotency_keys::status.eq(i16::try_from(response.status).unwrap_or(i16::MAX)),
                idempotency_keys::body.eq(&response.sealed_body),
                idempotency_keys::lease_until.eq(None::<OffsetDateTime>),
            ))
            .execute(&mut conn)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.release_idempotency", skip_all, fields(db.system.name = "postgresql"))]
    async fn release_idempotency(&self, account: AccountId, key: &str) -> Result<(), StorageError> {
        let mut conn = self.own_conn().await?;
        diesel::delete(idempotency_keys::table.find((account.as_uuid(), key)))
            .filter(idempotency_keys::status.is_null())
            .execute(&mut conn)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.purge_idempotency", skip_all, fields(db.system.name = "postgresql"))]
    async fn purge_idempotency(&self, before: OffsetDateTime) -> Result<u64, StorageError> {
        let mut conn = self.conn().await?;
        let removed = diesel::delete(idempotency_keys::table.filter(idempotency_keys::created_at.lt(before)))
            .execute(&mut conn)
            .await
            .map_err(db_error)?;
        Ok(removed as u64)
    }
}
