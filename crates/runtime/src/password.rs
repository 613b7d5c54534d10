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

tokio::task_local! {
    /// Set while a request holds a reserved turn (`BlockingPasswordHasher::reserved`).
    static RESERVED: ();
}

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
        // A request that reserved a turn (`reserve`) hashes under it, without queueing again.
        let _permit = match RESERVED.try_with(|_| ()) {
            Ok(()) => None,
            Err(_) => Some(self.permits.acquire().await.map_err(|_| HashFailure::new("the hasher is shut down"))?),
        };
        tokio::task::spawn_blocking(work).await.map_err(|e| HashFailure::new(&format!("the hashing task failed: {e}")))
    }

    /// Waits (at most `deadline`) for a turn to hash. The journal takes one for the routes
    /// that hash *before* it begins their unit of work, so a login flood queues here holding
    /// no transaction slot, and at most `max_concurrent` logins hold one at a time.
    /// `None`: no turn came in time.
    pub async fn reserve(&self, deadline: std::time::Duration) -> Option<HashTurn> {
        let permit = tokio::time::timeout(deadline, self.permits.clone().acquire_owned()).await.ok()?.ok()?;
        Some(HashTurn { _permit: permit })
    }
}

/// A reserved turn at the hasher ([`BlockingPasswordHasher::reserve`]).
#[derive(Debug)]
pub struct HashTurn {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl HashTurn {
    /// Runs `work` holding this turn: every hash it makes uses the turn instead of queueing.
    pub async fn run<T>(self, work: impl Future<Output = T>) -> T {
        let done = RESERVED.scope((), work).await;
        drop(self);
        done
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
