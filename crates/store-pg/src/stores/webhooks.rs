//! `WebhookStore` on PostgreSQL: endpoints, and the outbox — messages written in the
//! caller's unit of work, fanned out to deliveries in the same statement, claimed by the
//! workers of every instance with `FOR UPDATE SKIP LOCKED`.

use diesel::sql_types::{Integer, Text, Uuid as SqlUuid};
use keyward_domain::{
    AttemptId, MessageId, WebhookId,
    ports::WebhookStore,
    webhook::{
        Attempt, AttemptOutcome, AttemptPage, ClaimedDelivery, Delivery, EventType, Fairness, Message, WebhookEndpoint,
    },
};
use tracing::Instrument as _;

use crate::{
    rows::webhooks::{AttemptRow, EndpointRow, MessageRow},
    schema::{key_notices, webhook_attempts, webhook_deliveries, webhook_endpoints, webhook_messages},
    *,
};

fn span(name: &'static str) -> tracing::Span {
    tracing::info_span!(target: "keyward::otel", "store.webhooks", db.operation.name = name, db.system.name = "postgresql")
}

#[derive(QueryableByName)]
struct KeyIdRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

impl PgStore {
    /// The keys `ids` names, in that order.
    async fn keys_by_id(&self, conn: &mut AsyncPgConnection, ids: Vec<KeyIdRow>) -> Result<Vec<Key>, StorageError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = ids.into_iter().map(|r| r.id).collect();
        let rows: Vec<KeyRow> =
            keys::table.filter(keys::id.eq_any(&ids)).select(KeyRow::as_select()).load(conn).await.map_err(db_error)?;
        let mut keys = rows.into_iter().map(Key::try_from).collect::<Result<Vec<_>, _>>().map_err(corrupt)?;
        keys.sort_by_key(|k| ids.iter().position(|id| *id == k.id.as_uuid()));
        Ok(keys)
    }
}

/// A claimed delivery as the claim's statement returns it.
#[derive(QueryableByName)]
struct ClaimedRow {
    #[diesel(sql_type = SqlUuid)]
    message_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    endpoint_id: Uuid,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Timestamptz)]
    due: OffsetDateTime,
}

impl WebhookStore for PgStore {
    async fn insert_webhook(&self, endpoint: &WebhookEndpoint) -> Result<(), StorageError> {
        let row = EndpointRow::new(endpoint, self.at_rest());
        let mut conn = self.conn().await?;
        diesel::insert_into(webhook_endpoints::table)
            .values(&row)
            .execute(&mut conn)
            .instrument(span("insert_webhook"))
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn get_webhook(&self, account: AccountId, id: WebhookId) -> Result<Option<WebhookEndpoint>, StorageError> {
        let mut conn = self.conn().await?;
        let row: Option<EndpointRow> = webhook_endpoints::table
            .filter(webhook_endpoints::id.eq(id.as_uuid()))
            .filter(webhook_endpoints::account_id.eq(account.as_uuid()))
            .select(EndpointRow::as_select())
            .first(&mut conn)
            .instrument(span("get_webhook"))
            .await
            .optional()
            .map_err(db_error)?;
        row.map(|row| row.open(self.at_rest())).transpose().map_err(corrupt)
    }

    async fn list_webhooks(&self, account: AccountId) -> Result<Vec<WebhookEndpoint>, StorageError> {
        let mut conn = self.conn().await?;
        let rows: Vec<EndpointRow> = webhook_endpoints::table
            .filter(webhook_endpoints::account_id.eq(account.as_uuid()))
            .order(webhook_endpoints::id.asc())
            .select(EndpointRow::as_select())
            .load(&mut conn)
            .instrument(span("list_webhooks"))
            .await
            .map_err(db_error)?;
        rows.into_iter().map(|row| row.open(self.at_rest())).collect::<Result<_, _>>().map_err(corrupt)
    }

    async fn update_webhook(&self, endpoint: &WebhookEndpoint) -> Result<(), UpdateError> {
        let row = EndpointRow::new(endpoint, self.at_rest());
        let mut conn = self.conn().await?;
        let updated = diesel::update(webhook_endpoints::table)
            .filter(webhook_endpoints::id.eq(row.id))
            .filter(webhook_endpoints::account_id.eq(row.account_id))
            .set((
                webhook_endpoints::url.eq(&row.url),
                webhook_endpoints::description.eq(&row.description),
                webhook_endpoints::event_types.eq(&row.event_types),
                webhook_endpoints::disabled.eq(&row.disabled),
                webhook_endpoints::secret.eq(&row.secret),
                webhook_endpoints::previous_secret.eq(&row.previous_secret),
                webhook_endpoints::previous_secret_until.eq(row.previous_secret_until),
                webhook_endpoints::failing_since.eq(row.failing_since),
                webhook_endpoints::updated_at.eq(row.updated_at),
            ))
            .execute(&mut conn)
            .instrument(span("update_webhook"))
            .await
            .map_err(db_error)?;
        if updated == 0 { Err(UpdateError::NotFound) } else { Ok(()) }
    }

    async fn delete_webhook(&self, account: AccountId, id: WebhookId) -> Result<(), UpdateError> {
        let mut conn = self.conn().await?;
        // Deliveries and attempts go with it (ON DELETE CASCADE).
        let deleted = diesel::delete(webhook_endpoints::table)
            .filter(webhook_endpoints::id.eq(id.as_uuid()))
            .filter(webhook_endpoints::account_id.eq(account.as_uuid()))
            .execute(&mut conn)
            .instrument(span("delete_webhook"))
            .await
            .map_err(db_error)?;
        if deleted == 0 { Err(UpdateError::NotFound) } else { Ok(()) }
    }

    async fn enqueue_message(&self, message: &Message) -> Result<u32, StorageError> {
        let row = MessageRow::from(message);
        let mut conn = self.conn().await?;
        // One statement: the message is written only if an endpoint wants it, with one
        // delivery per such endpoint. An account without endpoints pays one index probe.
        let made = diesel::sql_query(
            "WITH targets AS (
                 SELECT id FROM webhook_endpoints
                 WHERE account_id = $2 AND disabled IS NULL
                   AND (cardinality(event_types) = 0 OR $3 = ANY (event_types))
             ), message AS (
                 INSERT INTO webhook_messages (id, account_id, event_type, payload, created_at)
                 SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM targets)
                 RETURNING id
             )
             INSERT INTO webhook_deliveries (message_id, endpoint_id, account_id, state, attempts, next_attempt_at)
             SELECT message.id, targets.id, $2, 'pending', 0, $5 FROM message, targets",
        )
        .bind::<SqlUuid, _>(row.id)
        .bind::<SqlUuid, _>(row.account_id)
        .bind::<Text, _>(&row.event_type)
        .bind::<Text, _>(&row.payload)
        .bind::<Timestamptz, _>(row.created_at)
        .execute(&mut conn)
        .instrument(span("enqueue_message"))
        .await
        .map_err(db_error)?;
        Ok(u32::try_from(made).unwrap_or(u32::MAX))
    }

    async fn claim_deliveries(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
        fairness: &Fairness,
    ) -> Result<Vec<ClaimedDelivery>, StorageError> {
        let (busy_accounts, busy_counts): (Vec<Uuid>, Vec<i32>) = fairness
            .in_flight
            .iter()
            .map(|(account, n)| (account.as_uuid(), i32::try_from(*n).unwrap_or(i32::MAX)))
            .unzip();
        let per_account = i64::from(fairness.per_account);
        let mut conn = self.conn().await?;
        conn.transaction::<_, DieselError, _>(async |conn| {
            // Each account's due deliveries ranked, earliest first; taken by rank (round-
            // robin between accounts) while the account has room. The rows are then locked
            // SKIP LOCKED and checked due again: two instances claiming at once take
            // different deliveries; the lease makes a claim whose worker died due again
            // once it ends.
            let claimed: Vec<ClaimedRow> = diesel::sql_query(
                "WITH ranked AS (
                     SELECT d.message_id, d.endpoint_id, d.next_attempt_at,
                            row_number() OVER (PARTITION BY d.account_id ORDER BY d.next_attempt_at) AS rank,
                            COALESCE(busy.n, 0) AS busy
                     FROM webhook_deliveries d
                     JOIN webhook_endpoints e ON e.id = d.endpoint_id
                     LEFT JOIN unnest($4::uuid[], $5::int4[]) AS busy(account_id, n) ON busy.account_id = d.account_id
                     WHERE d.state = 'pending' AND d.next_attempt_at <= $1 AND e.disabled IS NULL
                 ), chosen AS (
                     SELECT message_id, endpoint_id FROM ranked
                     WHERE rank + busy <= $6
                     ORDER BY rank, next_attempt_at
                     LIMIT $3
                 ), due AS (
                     SELECT d.message_id, d.endpoint_id, d.next_attempt_at FROM webhook_deliveries d
                     JOIN chosen USING (message_id, endpoint_id)
                     WHERE d.state = 'pending' AND d.next_attempt_at <= $1
                     FOR UPDATE OF d SKIP LOCKED
                 )
                 UPDATE webhook_deliveries d SET next_attempt_at = $2
                 FROM due
                 WHERE d.message_id = due.message_id AND d.endpoint_id = due.endpoint_id
                 RETURNING d.message_id, d.endpoint_id, d.attempts, due.next_attempt_at AS due",
            )
            .bind::<Timestamptz, _>(now)
            .bind::<Timestamptz, _>(lease_until)
            .bind::<diesel::sql_types::BigInt, _>(i64::from(limit))
            .bind::<diesel::sql_types::Array<SqlUuid>, _>(&busy_accounts)
            .bind::<diesel::sql_types::Array<Integer>, _>(&busy_counts)
            .bind::<diesel::sql_types::BigInt, _>(per_account)
            .load(conn)
            .await?;
            if claimed.is_empty() {
                return Ok((claimed, Vec::new(), Vec::new()));
            }
            let endpoint_ids: Vec<Uuid> = claimed.iter().map(|c| c.endpoint_id).collect();
            let message_ids: Vec<Uuid> = claimed.iter().map(|c| c.message_id).collect();
            let endpoints: Vec<EndpointRow> = webhook_endpoints::table
                .filter(webhook_endpoints::id.eq_any(&endpoint_ids))
                .select(EndpointRow::as_select())
                .load(conn)
                .await?;
            let messages: Vec<MessageRow> = webhook_messages::table
                .filter(webhook_messages::id.eq_any(&message_ids))
                .select(MessageRow::as_select())
                .load(conn)
                .await?;
            Ok((claimed, endpoints, messages))
        })
        .instrument(span("claim_deliveries"))
        .await
        .map_err(db_error)
        .and_then(|(claimed, endpoints, messages)| {
            let endpoints = endpoints
                .into_iter()
                .map(|row| row.open(self.at_rest()).map(|e| (*e.id.as_uuid().as_bytes(), e)))
                .collect::<Result<std::collections::HashMap<_, _>, _>>()
                .map_err(corrupt)?;
            let messages = messages
                .into_iter()
                .map(|row| Message::try_from(row).map(|m| (*m.id.as_uuid().as_bytes(), m)))
                .collect::<Result<std::collections::HashMap<_, _>, _>>()
                .map_err(corrupt)?;
            let mut out = Vec::with_capacity(claimed.len());
            for row in claimed {
                let (Some(endpoint), Some(message)) =
                    (endpoints.get(row.endpoint_id.as_bytes()), messages.get(row.message_id.as_bytes()))
                else {
                    continue;
                };
                out.push(ClaimedDelivery {
                    delivery: Delivery {
                        message_id: message.id,
                        endpoint_id: endpoint.id,
                        account_id: endpoint.account_id,
                        state: keyward_domain::webhook::DeliveryState::Pending,
                        attempts: u32::try_from(row.attempts).unwrap_or(0),
                        next_attempt_at: row.due,
                    },
                    endpoint: endpoint.clone(),
                    message: message.clone(),
                });
            }
            Ok(out)
        })
    }

    async fn record_attempt(&self, attempt: &Attempt, outcome: AttemptOutcome) -> Result<(), StorageError> {
        let row = AttemptRow::from(attempt);
        let (state, next) = match outcome {
            AttemptOutcome::Delivered => ("delivered", attempt.at),
            AttemptOutcome::RetryAt(at) => ("pending", at),
            AttemptOutcome::GaveUp => ("failed", attempt.at),
        };
        let mut conn = self.conn().await?;
        conn.transaction::<_, DieselError, _>(async |conn| {
            diesel::insert_into(webhook_attempts::table).values(&row).execute(conn).await?;
            diesel::update(webhook_deliveries::table)
                .filter(webhook_deliveries::message_id.eq(row.message_id))
                .filter(webhook_deliveries::endpoint_id.eq(row.endpoint_id))
                .set((
                    webhook_deliveries::state.eq(state),
                    webhook_deliveries::attempts.eq(webhook_deliveries::attempts + 1),
                    webhook_deliveries::next_attempt_at.eq(next),
                ))
                .execute(conn)
                .await?;
            let failing = webhook_endpoints::table.filter(webhook_endpoints::id.eq(row.endpoint_id));
            if attempt.succeeded {
                diesel::update(failing)
                    .set(webhook_endpoints::failing_since.eq(None::<OffsetDateTime>))
                    .execute(conn)
                    .await?;
            } else {
                diesel::update(failing.filter(webhook_endpoints::failing_since.is_null()))
                    .set(webhook_endpoints::failing_since.eq(attempt.at))
                    .execute(conn)
                    .await?;
            }
            Ok(())
        })
        .instrument(span("record_attempt"))
        .await
        .map_err(db_error)
    }

    async fn list_attempts(
        &self,
        account: AccountId,
        endpoint: WebhookId,
        before: Option<AttemptId>,
        limit: u32,
    ) -> Result<AttemptPage, StorageError> {
        let mut conn = self.conn().await?;
        let mut query = webhook_attempts::table
            .inner_join(webhook_endpoints::table)
            .filter(webhook_endpoints::account_id.eq(account.as_uuid()))
            .filter(webhook_attempts::endpoint_id.eq(endpoint.as_uuid()))
            .select(AttemptRow::as_select())
            .order(webhook_attempts::id.desc())
            .limit(i64::from(limit) + 1)
            .into_boxed();
        if let Some(before) = before {
            query = query.filter(webhook_attempts::id.lt(before.as_uuid()));
        }
        let mut rows: Vec<AttemptRow> =
            query.load(&mut conn).instrument(span("list_attempts")).await.map_err(db_error)?;
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let attempts = rows.into_iter().map(Attempt::try_from).collect::<Result<_, _>>().map_err(corrupt)?;
        Ok(AttemptPage { attempts, has_more })
    }

    async fn purge_webhook_messages(&self, before: OffsetDateTime) -> Result<u64, StorageError> {
        let mut conn = self.conn().await?;
        let purged = diesel::sql_query(
            "DELETE FROM webhook_messages m WHERE m.created_at < $1
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.message_id = m.id AND d.state = 'pending')",
        )
        .bind::<Timestamptz, _>(before)
        .execute(&mut conn)
        .instrument(span("purge_webhook_messages"))
        .await
        .map_err(db_error)?;
        Ok(purged as u64)
    }

    async fn keys_expiring_unannounced(
        &self,
        now: OffsetDateTime,
        lead: time::Duration,
        limit: u32,
    ) -> Result<Vec<Key>, StorageError> {
        let mut conn = self.conn().await?;
        // The mark as `notices::expiry_mark` writes it: whole seconds of the expiry, the lead.
        let ids: Vec<KeyIdRow> = diesel::sql_query(
            "SELECT k.id FROM keys k
             WHERE k.kind = 'service' AND k.expires_at IS NOT NULL AND k.revoked_at IS NULL
               AND k.rotated_to IS NULL AND k.expires_at > $1 AND k.expires_at <= $2
               AND NOT EXISTS (SELECT 1 FROM key_notices n WHERE n.key_id = k.id AND n.event_type = 'key.expiring'
                   AND n.mark = floor(extract(epoch FROM k.expires_at))::bigint::text || ':' || $3::text)
             ORDER BY k.expires_at LIMIT $4",
        )
        .bind::<Timestamptz, _>(now)
        .bind::<Timestamptz, _>(now + lead)
        .bind::<diesel::sql_types::BigInt, _>(lead.whole_seconds())
        .bind::<diesel::sql_types::BigInt, _>(i64::from(limit))
        .load(&mut conn)
        .instrument(span("keys_expiring_unannounced"))
        .await
        .map_err(db_error)?;
        self.keys_by_id(&mut conn, ids).await
    }

    async fn keys_with_low_quota_unannounced(
        &self,
        now: OffsetDateTime,
        percent: u8,
        event: EventType,
        limit: u32,
    ) -> Result<Vec<Key>, StorageError> {
        use keyward_domain::quota::{RefillInterval, refill_period};
        let mut conn = self.conn().await?;
        // The configured amount is the refill's, else the starting balance; the stored
        // balance must be of the current period (refill periods as `quota::refill_period`
        // counts them). The fingerprint is checked by the caller, who can compute it.
        let ids: Vec<KeyIdRow> = diesel::sql_query(
            "SELECT k.id FROM keys k
             WHERE k.kind = 'service' AND k.quota_balance IS NOT NULL AND k.revoked_at IS NULL
               AND k.quota IS NOT NULL
               AND k.quota_period = CASE k.quota->'refill'->>'interval'
                     WHEN 'day' THEN $1 WHEN 'month' THEN $2 ELSE 0 END
               AND k.quota_balance * 100 <= $3 * coalesce((k.quota->'refill'->>'amount')::bigint,
                                                          (k.quota->>'remaining')::bigint)
               AND NOT EXISTS (SELECT 1 FROM key_notices n WHERE n.key_id = k.id AND n.event_type = $4
                   AND n.mark = k.quota_fingerprint::text || ':' || k.quota_period::text)
             LIMIT $5",
        )
        .bind::<diesel::sql_types::BigInt, _>(refill_period(RefillInterval::Day, now))
        .bind::<diesel::sql_types::BigInt, _>(refill_period(RefillInterval::Month, now))
        .bind::<diesel::sql_types::BigInt, _>(i64::from(percent))
        .bind::<Text, _>(event.as_str())
        .bind::<diesel::sql_types::BigInt, _>(i64::from(limit))
        .load(&mut conn)
        .instrument(span("keys_with_low_quota_unannounced"))
        .await
        .map_err(db_error)?;
        self.keys_by_id(&mut conn, ids).await
    }

    async fn record_notice(&self, key: KeyId, event: EventType, mark: &str) -> Result<bool, StorageError> {
        let mut conn = self.conn().await?;
        let inserted = diesel::insert_into(key_notices::table)
            .values((
                key_notices::key_id.eq(key.as_uuid()),
                key_notices::event_type.eq(event.as_str()),
                key_notices::mark.eq(mark),
            ))
            .on_conflict_do_nothing()
            .execute(&mut conn)
            .instrument(span("record_notice"))
            .await
            .map_err(db_error)?;
        Ok(inserted == 1)
    }

    async fn retry_delivery(
        &self,
        account: AccountId,
        endpoint: WebhookId,
        message: MessageId,
        now: OffsetDateTime,
    ) -> Result<(), UpdateError> {
        let mut conn = self.conn().await?;
        let updated = diesel::update(webhook_deliveries::table)
            .filter(webhook_deliveries::account_id.eq(account.as_uuid()))
            .filter(webhook_deliveries::endpoint_id.eq(endpoint.as_uuid()))
            .filter(webhook_deliveries::message_id.eq(message.as_uuid()))
            .set((webhook_deliveries::state.eq("pending"), webhook_deliveries::next_attempt_at.eq(now)))
            .execute(&mut conn)
            .instrument(span("retry_delivery"))
            .await
            .map_err(db_error)?;
        if updated == 0 { Err(UpdateError::NotFound) } else { Ok(()) }
    }
}

impl PgStore {
    /// Seals, under the current `KEYWARD_SECRET`, every webhook secret stored in plaintext
    /// (written before sealing was configured) or sealed under `KEYWARD_SECRET_PREVIOUS`;
    /// answers how many endpoints it wrote. `serve` runs it at start. Without sealing
    /// configured it does nothing; a secret that opens with neither key is an error, found
    /// before anything is written. Each row is written only if it still holds what was
    /// read, so instances starting together do not undo each other.
    pub async fn seal_webhook_secrets(&self) -> Result<u32, StorageError> {
        use keyward_domain::at_rest::{AtRest, Opened};

        use crate::rows::webhooks::sealing_context;

        let Some(at_rest) = self.at_rest.clone() else { return Ok(0) };
        // The column's bytes under the current key, or `None` when they are already.
        let resealed = |id: Uuid, column: &str, stored: &[u8]| -> Result<Option<Vec<u8>>, StorageError> {
            let context = sealing_context(id, column);
            let plain = if AtRest::is_sealed(stored) {
                match at_rest.open(&context, stored) {
                    Ok((_, Opened::Current)) => return Ok(None),
                    Ok((plain, Opened::Previous)) => plain,
                    Err(e) => {
                        return Err(StorageError::Internal(format!("webhook endpoint {id}: {column}: {e}").into()));
                    }
                }
            } else {
                stored.to_vec()
            };
            Ok(Some(at_rest.seal(&context, &plain, &keyward_domain::OsRandom)))
        };
        let mut conn = self.conn().await?;
        let rows: Vec<(Uuid, Vec<u8>, Option<Vec<u8>>)> = webhook_endpoints::table
            .select((webhook_endpoints::id, webhook_endpoints::secret, webhook_endpoints::previous_secret))
            .load(&mut conn)
            .instrument(span("seal_webhook_secrets"))
            .await
            .map_err(db_error)?;
        let mut changes = Vec::new();
        for (id, secret, previous) in rows {
            let new_secret = resealed(id, "secret", &secret)?;
            let new_previous = previous.as_ref().map(|p| resealed(id, "previous_secret", p)).transpose()?.flatten();
            if new_secret.is_some() || new_previous.is_some() {
                let sealed_previous = new_previous.or_else(|| previous.clone());
                changes.push((id, secret.clone(), new_secret.unwrap_or(secret), sealed_previous));
            }
        }
        let mut written = 0u32;
        for (id, read, secret, previous) in changes {
            let updated = diesel::update(
                webhook_endpoints::table
                    .filter(webhook_endpoints::id.eq(id))
                    .filter(webhook_endpoints::secret.eq(read)),
            )
            .set((webhook_endpoints::secret.eq(secret), webhook_endpoints::previous_secret.eq(previous)))
            .execute(&mut conn)
            .instrument(span("seal_webhook_secrets"))
            .await
            .map_err(db_error)?;
            written += u32::try_from(updated).unwrap_or(0);
        }
        Ok(written)
    }
}
