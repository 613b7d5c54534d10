//! `MailStore` and `PasswordResetStore` on PostgreSQL: the mail outbox (claimed with
//! `FOR UPDATE SKIP LOCKED` and a lease, like webhook deliveries) and password resets.

use diesel::sql_types::{BigInt, Timestamptz};
use keyward_domain::{
    MailId, ResetId,
    mail::{Mail, MailBacklog, MailOutcome, QueuedMail},
    people::Email,
    ports::MailStore,
    ports::{PasswordReset, PasswordResetStore},
};

use crate::schema::{mail_outbox, password_resets, processed_reports};
use crate::*;

#[derive(Debug, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = mail_outbox, check_for_backend(diesel::pg::Pg))]
struct MailRow {
    id: Uuid,
    account_id: Option<Uuid>,
    recipient: String,
    subject: String,
    text_body: String,
    html_body: String,
    created_at: OffsetDateTime,
    attempts: i32,
}

impl MailRow {
    fn into_queued(self) -> Result<QueuedMail, crate::rows::CorruptRow> {
        let bad = crate::rows::corrupt("mail_outbox", self.id);
        let mail = Mail {
            id: MailId::from_uuid(self.id),
            account_id: self.account_id.map(AccountId::from_uuid),
            to: Email::new(&self.recipient).map_err(|e| bad(format!("recipient: {e}")))?,
            subject: self.subject,
            text: self.text_body,
            html: self.html_body,
            created_at: self.created_at,
        };
        Ok(QueuedMail { mail, attempts: u32::try_from(self.attempts).unwrap_or(0) })
    }
}

impl MailStore for PgStore {
    #[tracing::instrument(target = "keyward::otel", name = "store.enqueue_mail", skip_all, fields(db.system.name = "postgresql"))]
    async fn enqueue_mail(&self, mail: &Mail) -> Result<(), StorageError> {
        let mut conn = self.conn().await?;
        diesel::insert_into(mail_outbox::table)
            .values((
                mail_outbox::id.eq(mail.id.as_uuid()),
                mail_outbox::account_id.eq(mail.account_id.map(|a| a.as_uuid())),
                mail_outbox::recipient.eq(mail.to.as_str()),
                mail_outbox::subject.eq(&mail.subject),
                mail_outbox::text_body.eq(&mail.text),
                mail_outbox::html_body.eq(&mail.html),
                mail_outbox::created_at.eq(mail.created_at),
                mail_outbox::next_attempt_at.eq(Some(mail.created_at)),
            ))
            .execute(&mut conn)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.claim_mail", skip_all, fields(db.system.name = "postgresql"))]
    async fn claim_mail(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<QueuedMail>, StorageError> {
        let mut conn = self.conn().await?;
        // SKIP LOCKED: two instances claiming at once take different mails; the lease makes
        // a claim whose worker died due again once it ends.
        let rows: Vec<MailRow> = diesel::sql_query(
            "UPDATE mail_outbox m SET next_attempt_at = $2
             FROM (
                 SELECT id FROM mail_outbox
                 WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= $1
                 ORDER BY next_attempt_at
                 LIMIT $3
                 FOR UPDATE SKIP LOCKED
             ) due
             WHERE m.id = due.id
             RETURNING m.id, m.account_id, m.recipient, m.subject, m.text_body, m.html_body, m.created_at, m.attempts",
        )
        .bind::<Timestamptz, _>(now)
        .bind::<Timestamptz, _>(lease_until)
        .bind::<BigInt, _>(i64::from(limit))
        .load(&mut conn)
        .await
        .map_err(db_error)?;
        let mut claimed: Vec<QueuedMail> =
            rows.into_iter().map(MailRow::into_queued).collect::<Result<_, _>>().map_err(corrupt)?;
        claimed.sort_by_key(|q| (q.mail.created_at, q.mail.id));
        Ok(claimed)
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.settle_mail", skip_all, fields(db.system.name = "postgresql"))]
    async fn settle_mail(&self, id: MailId, outcome: &MailOutcome) -> Result<(), StorageError> {
        let mut conn = self.conn().await?;
        let row = mail_outbox::table.find(id.as_uuid());
        let done = match outcome {
            // The bodies held a link's token: gone once delivered.
            MailOutcome::Sent { at } => {
                diesel::update(row)
                    .set((
                        mail_outbox::attempts.eq(mail_outbox::attempts + 1),
                        mail_outbox::sent_at.eq(Some(*at)),
                        mail_outbox::next_attempt_at.eq(None::<OffsetDateTime>),
                        mail_outbox::text_body.eq(""),
                        mail_outbox::html_body.eq(""),
                        mail_outbox::last_error.eq(None::<String>),
                    ))
                    .execute(&mut conn)
                    .await
            }
            MailOutcome::Failed { error, next_at } => {
                diesel::update(row)
                    .set((
                        mail_outbox::attempts.eq(mail_outbox::attempts + 1),
                        mail_outbox::next_attempt_at.eq(*next_at),
                        mail_outbox::last_error.eq(Some(error.chars().take(500).collect::<String>())),
                    ))
                    .execute(&mut conn)
                    .await
            }
        };
        done.map_err(db_error)?;
        Ok(())
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.mail_backlog", skip_all, fields(db.system.name = "postgresql"))]
    async fn mail_backlog(&self) -> Result<MailBacklog, StorageError> {
        #[derive(QueryableByName)]
        struct Counts {
            #[diesel(sql_type = BigInt)]
            pending: i64,
            #[diesel(sql_type = BigInt)]
            delayed: i64,
            #[diesel(sql_type = BigInt)]
            failed: i64,
        }
        let mut conn = self.conn().await?;
        let counts: Counts = diesel::sql_query(
            "SELECT count(*) FILTER (WHERE next_attempt_at IS NOT NULL) AS pending,
                    count(*) FILTER (WHERE next_attempt_at IS NOT NULL AND attempts > 0) AS delayed,
                    count(*) FILTER (WHERE next_attempt_at IS NULL) AS failed
             FROM mail_outbox WHERE sent_at IS NULL",
        )
        .get_result(&mut conn)
        .await
        .map_err(db_error)?;
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(MailBacklog { pending: n(counts.pending), delayed: n(counts.delayed), failed: n(counts.failed) })
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.pending_mail_of", skip_all, fields(db.system.name = "postgresql"))]
    async fn pending_mail_of(&self, account: AccountId) -> Result<Vec<(Mail, u32)>, StorageError> {
        let mut conn = self.conn().await?;
        let rows: Vec<MailRow> = mail_outbox::table
            .filter(mail_outbox::account_id.eq(account.as_uuid()))
            .filter(mail_outbox::sent_at.is_null())
            .order((mail_outbox::created_at.asc(), mail_outbox::id.asc()))
            .select(MailRow::as_select())
            .load(&mut conn)
            .await
            .map_err(db_error)?;
        rows.into_iter()
            .map(|row| row.into_queued().map(|q| (q.mail, q.attempts)))
            .collect::<Result<_, _>>()
            .map_err(corrupt)
    }
}

impl PasswordResetStore for PgStore {
    #[tracing::instrument(target = "keyward::otel", name = "store.insert_reset", skip_all, fields(db.system.name = "postgresql"))]
    async fn insert_reset(&self, reset: &PasswordReset) -> Result<(), StorageError> {
        let mut conn = self.conn().await?;
        diesel::insert_into(password_resets::table)
            .values((
                password_resets::id.eq(reset.id.as_uuid()),
                password_resets::user_id.eq(reset.user_id.as_uuid()),
                password_resets::token_hash.eq(&reset.token_hash[..]),
                password_resets::created_at.eq(reset.created_at),
                password_resets::expires_at.eq(reset.expires_at),
            ))
            .on_conflict(password_resets::user_id)
            .do_update()
            .set((
                password_resets::id.eq(reset.id.as_uuid()),
                password_resets::token_hash.eq(&reset.token_hash[..]),
                password_resets::created_at.eq(reset.created_at),
                password_resets::expires_at.eq(reset.expires_at),
            ))
            .execute(&mut conn)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.take_reset", skip_all, fields(db.system.name = "postgresql"))]
    async fn take_reset(&self, token_hash: &[u8; 32]) -> Result<Option<PasswordReset>, StorageError> {
        let mut conn = self.conn().await?;
        let row: Option<(Uuid, Uuid, Vec<u8>, OffsetDateTime, OffsetDateTime)> =
            diesel::delete(password_resets::table.filter(password_resets::token_hash.eq(&token_hash[..])))
                .returning((
                    password_resets::id,
                    password_resets::user_id,
                    password_resets::token_hash,
                    password_resets::created_at,
                    password_resets::expires_at,
                ))
                .get_result(&mut conn)
                .await
                .optional()
                .map_err(db_error)?;
        Ok(row.map(|(id, user_id, _, created_at, expires_at)| PasswordReset {
            id: ResetId::from_uuid(id),
            user_id: UserId::from_uuid(user_id),
            token_hash: *token_hash,
            created_at,
            expires_at,
        }))
    }
}

impl keyward_domain::ports::ReportStore for PgStore {
    #[tracing::instrument(target = "keyward::otel", name = "store.report_processed", skip_all, fields(db.system.name = "postgresql"))]
    async fn report_processed(&self, digest: &[u8; 32]) -> Result<bool, StorageError> {
        let mut conn = self.conn().await?;
        diesel::select(diesel::dsl::exists(processed_reports::table.filter(processed_reports::digest.eq(&digest[..]))))
            .get_result(&mut conn)
            .await
            .map_err(db_error)
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.remember_report", skip_all, fields(db.system.name = "postgresql"))]
    async fn remember_report(&self, digest: &[u8; 32], at: OffsetDateTime) -> Result<(), StorageError> {
        let mut conn = self.conn().await?;
        diesel::insert_into(processed_reports::table)
            .values((processed_reports::digest.eq(&digest[..]), processed_reports::processed_at.eq(at)))
            .on_conflict_do_nothing()
            .execute(&mut conn)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}
