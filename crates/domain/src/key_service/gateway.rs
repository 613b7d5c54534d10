//! Forward auth (issue #31, docs/gateways.md): may this request, which a gateway is about
//! to proxy, pass? The keyspace named in the gateway's configuration binds it to one
//! tenant's keys; its route table says what a key needs for the request's method and path.

use super::*;
use crate::gateway::{Gate, Requirement, RouteTable, RouteTableInput};

/// The request a gateway asks about.
#[derive(Debug, Clone, Copy)]
pub struct ForwardRequest<'a> {
    /// The key the client presented, if any.
    pub key: Option<&'a str>,
    /// The original method.
    pub method: &'a str,
    /// The original path, in [`crate::gateway::normalize_path`]'s form.
    pub path: &'a str,
    /// The client's address (the connection's, or a trusted proxy's word for it).
    pub ip: Option<IpAddr>,
}

impl<S: Store> KeyService<S> {
    /// The keyspace as the forward-auth route sees it. Errors: `NotFound`, `Storage`.
    pub async fn gate(&self, keyspace: KeyspaceId) -> Result<Arc<Gate>, ManageError> {
        self.store.gate(keyspace).await?.ok_or(ManageError::NotFound)
    }

    /// Decides a forward-auth check against `gate`: the key must be a service key of the
    /// gate's keyspace (any other, of this account or another, is `NOT_FOUND`), pass every
    /// check of a verification with the scopes the route needs, and then its rate limit
    /// and one credit of its quota. Never writes to storage.
    pub async fn forward_auth<A: Admission>(
        &self,
        gate: &Gate,
        request: ForwardRequest<'_>,
        admission: &A,
    ) -> Result<VerifyOutcome, ManageError> {
        let Some(plaintext) = request.key else { return Ok(VerifyOutcome::not_found()) };
        let found = self.find_service_key(gate.account_id, plaintext, request.ip, admission).await?;
        let Some(key) = found.filter(|key| key.keyspace_id == Some(gate.keyspace_id)) else {
            return Ok(VerifyOutcome::not_found());
        };
        let scopes = match gate.routes.requirement(request.method, request.path) {
            Requirement::Scopes(scopes) => scopes,
            Requirement::Denied => {
                // The key is checked all the same: a revoked or disabled key says so.
                let checks = VerifyRequest { scopes: &[], resource: None, ip: request.ip, resolved: &[] };
                let code = match self.check_key(&key, checks, self.clock.now()).await {
                    VerifyCode::Valid => VerifyCode::RouteNotAllowed,
                    code => code,
                };
                return Ok(VerifyOutcome::refused(code, Some(key)));
            }
        };
        let checks = VerifyRequest { scopes, resource: None, ip: request.ip, resolved: &[] };
        self.decide(key, checks, 1, admission).await
    }

    /// A keyspace's route table. Errors: `Forbidden` (scope), `NotFound`, `Storage`.
    pub async fn routes(&self, principal: &Principal, keyspace: KeyspaceId) -> Result<Arc<Gate>, ManageError> {
        principal.require(management::KEYSPACES_READ)?;
        let gate = self.store.gate(keyspace).await?;
        gate.filter(|gate| gate.account_id == principal.account_id).ok_or(ManageError::NotFound)
    }

    /// Replaces a keyspace's route table; every instance applies it within a second.
    /// Errors: `Forbidden` (scope), `Invalid` (each bad field named: `rules[2].path`),
    /// `NotFound`, `Storage`.
    pub async fn put_routes(
        &self,
        principal: &Principal,
        keyspace: KeyspaceId,
        input: &RouteTableInput,
    ) -> Result<Gate, ManageError> {
        principal.require(management::KEYSPACES_WRITE)?;
        let routes = RouteTable::parse(input)?;
        let now = self.now();
        if !self.store.put_routes(principal.account_id, keyspace, &routes, now).await? {
            return Err(ManageError::NotFound);
        }
        Ok(Gate { keyspace_id: keyspace, account_id: principal.account_id, routes, updated_at: Some(now) })
    }
}
