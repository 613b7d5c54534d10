//! `SessionStore` on PostgreSQL.

use crate::*;

impl SessionStore for PgStore {
    #[tracing::instrument(target = "keyward::otel", name = "store.insert_session", skip_all, fields(db.system.name = "postgresql"))]
    async fn insert_session(&self, session: &Session) -> Result<(), StorageError> {
        let row = SessionRow::from(session);
        let mut conn = self.conn().await?;
        diesel::insert_into(sessions::table).values(&row).execute(&mut conn).await.map_err(db_error)?;
        Ok(())
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.find_session", skip_all, fields(db.system.name = "postgresql"))]
    async fn find_session(&self, token_hash: &[u8; 32]) -> Result<Option<Session>, StorageError> {
        let mut conn = self.conn().await?;
        let row: Option<SessionRow> = sessions::table
            .filter(sessions::token_hash.eq(&token_hash[..]))
            .select(SessionRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(db_error)?;
        row.map(Session::try_from).transpose().map_err(corrupt)
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.touch_session", skip_all, fields(db.system.name = "postgresql"))]
    async fn touch_session(&self, id: SessionId, at: OffsetDateTime) -> Result<(), StorageError> {
        let mut conn = self.conn().await?;
        diesel::update(sessions::table.find(id.as_uuid()))
            .filter(sessions::last_seen_at.lt(at))
            .set(sessions::last_seen_at.eq(at))
            .execute(&mut conn)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.set_step_up", skip_all, fields(db.system.name = "postgresql"))]
    async fn set_step_up(&self, id: SessionId, at: OffsetDateTime) -> Result<(), StorageError> {
        let mut conn = self.conn().await?;
        diesel::update(sessions::table.find(id.as_uuid()))
            .set(sessions::step_up_at.eq(at))
            .execute(&mut conn)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.delete_session", skip_all, fields(db.system.name = "postgresql"))]
    async fn delete_session(&self, id: SessionId) -> Result<Option<Session>, StorageError> {
        let mut conn = self.conn().await?;
        let row: Option<SessionRow> = diesel::delete(sessions::table.find(id.as_uuid()))
            .returning(SessionRow::as_returning())
            .get_result(&mut conn)
            .await
            .optional()
            .map_err(db_error)?;
        row.map(Session::try_from).transpose().map_err(corrupt)
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.delete_sessions_of_user", skip_all, fields(db.system.name = "postgresql"))]
    async fn delete_sessions_of_user(&self, user: UserId, keep: Option<SessionId>) -> Result<usize, StorageError> {
        let mut conn = self.conn().await?;
        let mine = sessions::table.filter(sessions::user_id.eq(user.as_uuid()));
        let ended = match keep {
            Some(keep) => diesel::delete(mine.filter(sessions::id.ne(keep.as_uuid()))).execute(&mut conn).await,
            None => diesel::delete(mine).execute(&mut conn).await,
        };
        ended.map_err(db_error)
    }
}
