//! `GatewayStore` on PostgreSQL: a keyspace's route table as the JSON it was written in
//! (`keyspace_routes`), read through the gate cache (`gate_cache.rs`).

use keyward_domain::{
    gateway::{Gate, RouteTable, RouteTableInput},
    ports::GatewayStore,
};

use crate::schema::keyspace_routes;
use crate::*;

impl GatewayStore for PgStore {
    async fn gate(&self, keyspace: KeyspaceId) -> Result<Option<Arc<Gate>>, StorageError> {
        match &self.gates {
            Some(gates) => {
                gates.get_or_load(keyspace.as_uuid(), self.load_gate(keyspace)).await.map_err(|e| shared_error(&e))
            }
            None => self.load_gate(keyspace).await,
        }
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.put_routes", skip_all, fields(db.system.name = "postgresql"))]
    async fn put_routes(
        &self,
        account: AccountId,
        keyspace: KeyspaceId,
        routes: &RouteTable,
        at: OffsetDateTime,
    ) -> Result<bool, StorageError> {
        let json = serde_json::to_value(routes.to_input()).map_err(|e| StorageError::Internal(Box::new(e)))?;
        let mut conn = self.conn().await?;
        conn.transaction::<_, DieselError, _>(async |conn| {
            // Locked, so that a concurrent deletion of the keyspace waits for this write.
            if !super::accounts::lock_keyspace(conn, account, keyspace).await? {
                return Ok(false);
            }
            diesel::insert_into(keyspace_routes::table)
                .values((
                    keyspace_routes::keyspace_id.eq(keyspace.as_uuid()),
                    keyspace_routes::routes.eq(&json),
                    keyspace_routes::updated_at.eq(at),
                ))
                .on_conflict(keyspace_routes::keyspace_id)
                .do_update()
                .set((keyspace_routes::routes.eq(&json), keyspace_routes::updated_at.eq(at)))
                .execute(conn)
                .await?;
            self.announce_gate(conn, keyspace.as_uuid()).await?;
            Ok(true)
        })
        .await
        .map_err(db_error)
    }
}

impl PgStore {
    #[tracing::instrument(target = "keyward::otel", name = "store.load_gate", skip_all, fields(db.system.name = "postgresql"))]
    async fn load_gate(&self, keyspace: KeyspaceId) -> Result<Option<Arc<Gate>>, StorageError> {
        // Never through a unit of work's connection: the cache must only hold committed rows.
        let mut conn = self.own_conn().await?;
        let found: Option<(Uuid, Option<serde_json::Value>, Option<OffsetDateTime>)> = keyspaces::table
            .left_join(keyspace_routes::table)
            .filter(keyspaces::id.eq(keyspace.as_uuid()))
            .select((keyspaces::account_id, keyspace_routes::routes.nullable(), keyspace_routes::updated_at.nullable()))
            .first(&mut conn)
            .await
            .optional()
            .map_err(db_error)?;
        let Some((account, json, updated_at)) = found else { return Ok(None) };
        let routes = match json {
            None => RouteTable::default(),
            Some(json) => {
                let input: RouteTableInput =
                    serde_json::from_value(json).map_err(|e| StorageError::Internal(Box::new(e)))?;
                RouteTable::parse(&input)
                    .map_err(|_| StorageError::Internal("a stored route table no longer parses".into()))?
            }
        };
        Ok(Some(Arc::new(Gate {
            keyspace_id: keyspace,
            account_id: AccountId::from_uuid(account),
            routes,
            updated_at,
        })))
    }
}
