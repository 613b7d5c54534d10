//! The `PasswordHasher` port on a blocking thread pool: argon2 takes tens of milliseconds of
//! CPU, which must not run on the async executor, and a semaphore caps how many run at once,
//! so a flood of logins queues instead of starving verification of CPU.

use std::sync::Arc;

use keyward_domain::{
    OsRandom,
    password::{HashFailure, HashParams, Password, PasswordCheck, PasswordHash},
    ports::PasswordHasher,
};
use tokio::sync::Semaphore;

#[derive(Debug, Clone)]
pub struct BlockingPasswordHasher {
    params: HashParams,
    permits: Arc<Semaphore>,
    /// Verified against when the email is unknown, so that answer takes as long as a wrong
    /// password does.
    dummy: PasswordHash,
}

impl BlockingPasswordHasher {
    /// `max_concurrent` hashes at a time (one per core leaves the executor threads free
    /// enough to keep verifying keys).
    pub fn new(params: HashParams, max_concurrent: usize) -> Result<Self, HashFailure> {
        let dummy = params.hash(&Password::presented("keyward dummy password".into()), &OsRandom)?;
        Ok(Self { params, permits: Arc::new(Semaphore::new(max_concurrent.max(1))), dummy })
    }

    async fn blocking<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, HashFailure> {
        let _permit = self.permits.acquire().await.map_err(|_| HashFailure::new("the hasher is shut down"))?;
        tokio::task::spawn_blocking(work).await.map_err(|e| HashFailure::new(&format!("the hashing task failed: {e}")))
    }
}

impl PasswordHasher for BlockingPasswordHasher {
    async fn hash(&self, password: Password) -> Result<PasswordHash, HashFailure> {
        let params = self.params;
        self.blocking(move || params.hash(&password, &OsRandom)).await?
    }

    async fn verify(&self, password: Password, hash: Option<PasswordHash>) -> Result<PasswordCheck, HashFailure> {
        let params = self.params;
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.clone());
        let check = self.blocking(move || params.verify(&password, &hash)).await?;
        Ok(if known { check } else { PasswordCheck { matches: false, needs_rehash: false } })
    }
}
