//! In-memory storage: the embedded default (`keyward serve` with no database) and a fast
//! double for tests. It implements the same ports as `store-pg` and passes the same
//! conformance suite, so trying Keyward out behaves like running it in production.
//!
//! Architecture invariant: every port method takes the lock once, does its work without
//! awaiting, and releases it; no lock is held across an `.await`. Data is lost on exit.

mod accounts;
mod audit;
mod gateway;
mod keys;
mod mail;
mod people;
mod undo;
mod usage;
mod webhooks;

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    future::{Future, ready},
    sync::{Arc, PoisonError, RwLock},
};

use keyward_domain::{
    Account, AccountId, Actor, EventId, InvitationId, Key, KeyHash, KeyId, KeyKind, KeyStatus, Keyspace, KeyspaceId,
    SessionId, UserId,
    audit::{AuditEvent, AuditFilter, AuditPosition, AuditRecord, chain_hash},
    idempotency::{Claim, LEASE, StoredResponse, lapsed},
    password::PasswordHash,
    people::{Email, Invitation, Membership, Role, Session, User},
    ports::{
        AccountStore, Atomic, AuditStore, CreateUserError, DeleteKeyspaceError, IdempotencyStore, InsertKeyError,
        InsertKeyspaceError, KeyCounts, KeyFilter, KeyPage, KeyStore, KeyspaceStore, MembershipError, Outcome,
        PageRequest, SessionStore, StorageError, Store, UpdateError, UpdateKeyspaceError, UsageStore, UserStore,
        VerifiableKey,
    },
    quota::QuotaBalance,
    usage::{AccountStats, KeyUse, UsageEntry, UsagePosition, UsageRecord, UsageSummary, day_and_month_start},
};
use time::OffsetDateTime;
use undo::Journaled;

/// The last link of an audit chain: its seq and hash.
type ChainHead = (i64, [u8; 32]);

/// The tables. Those a unit of work writes are `Journaled`, so a rollback can undo its
/// writes (`undo.rs`); the usage tables are written only by the flusher, outside units.
#[derive(Debug, Default)]
struct State {
    accounts: Journaled<HashMap<AccountId, Account>>,
    keyspaces: Journaled<BTreeMap<KeyspaceId, Keyspace>>,
    /// The route tables written, as the forward-auth route reads them.
    gates: Journaled<HashMap<KeyspaceId, Arc<keyward_domain::gateway::Gate>>>,
    keys: Journaled<BTreeMap<KeyId, Key>>,
    by_hash: Journaled<HashMap<KeyHash, KeyId>>,
    users: Journaled<BTreeMap<UserId, User>>,
    memberships: Journaled<BTreeMap<(AccountId, UserId), Membership>>,
    invitations: Journaled<BTreeMap<InvitationId, keyward_domain::people::Invitation>>,
    sessions: Journaled<HashMap<SessionId, Session>>,
    audit: Journaled<BTreeMap<EventId, AuditRecord>>,
    /// The last (seq, hash) of each chain.
    audit_heads: Journaled<HashMap<Option<AccountId>, ChainHead>>,
    idempotency: Journaled<HashMap<(AccountId, String), IdempotencyEntry>>,
    webhooks: Journaled<BTreeMap<keyward_domain::WebhookId, keyward_domain::webhook::WebhookEndpoint>>,
    messages: Journaled<BTreeMap<keyward_domain::MessageId, keyward_domain::webhook::Message>>,
    deliveries:
        Journaled<BTreeMap<(keyward_domain::MessageId, keyward_domain::WebhookId), keyward_domain::webhook::Delivery>>,
    attempts: Journaled<BTreeMap<keyward_domain::AttemptId, keyward_domain::webhook::Attempt>>,
    /// Notices sent: (key, event type, mark).
    notices: Journaled<HashMap<(KeyId, &'static str, String), ()>>,
    mails: Journaled<BTreeMap<keyward_domain::MailId, mail::Outgoing>>,
    resets: Journaled<HashMap<[u8; 32], keyward_domain::ports::PasswordReset>>,
    /// Digests of the signed leak reports processed, and when.
    reports: Journaled<HashMap<[u8; 32], OffsetDateTime>>,
    /// Per-request records as stored, oldest first, each with its position (`seq`: the
    /// order of writing, never reused, so a purge moves no cursor).
    usage: VecDeque<UsageEntry>,
    next_usage_seq: i64,
    /// Requests per key per UTC day (days since the epoch).
    daily: HashMap<(KeyId, i64), u64>,
}

/// Calls `$method($args)` on every journaled table of a `State`.
macro_rules! each_journaled {
    ($state:expr, $method:ident($($arg:expr),*)) => {{
        let state = $state;
        state.accounts.$method($($arg),*);
        state.keyspaces.$method($($arg),*);
        state.gates.$method($($arg),*);
        state.keys.$method($($arg),*);
        state.by_hash.$method($($arg),*);
        state.users.$method($($arg),*);
        state.memberships.$method($($arg),*);
        state.invitations.$method($($arg),*);
        state.sessions.$method($($arg),*);
        state.audit.$method($($arg),*);
        state.audit_heads.$method($($arg),*);
        state.idempotency.$method($($arg),*);
        state.webhooks.$method($($arg),*);
        state.messages.$method($($arg),*);
        state.deliveries.$method($($arg),*);
        state.attempts.$method($($arg),*);
        state.notices.$method($($arg),*);
        state.mails.$method($($arg),*);
        state.resets.$method($($arg),*);
        state.reports.$method($($arg),*);
    }};
}

#[derive(Debug, Clone)]
struct IdempotencyEntry {
    fingerprint: [u8; 32],
    created_at: OffsetDateTime,
    lease_until: Option<OffsetDateTime>,
    response: Option<StoredResponse>,
}

impl State {
    /// Undoes what `unit` wrote after `since`.
    fn undo(&mut self, unit: u64, since: u64) {
        each_journaled!(self, undo(unit, since));
    }

    /// Forgets what `unit` wrote: it committed (or was undone).
    fn forget(&mut self, unit: u64) {
        each_journaled!(self, forget(unit));
    }

    fn active_service_keys(&self, account: AccountId, now: OffsetDateTime) -> u64 {
        let active = self.keys.values().filter(|k| {
            k.account_id == account
                && k.kind == KeyKind::Service
                && k.revoked_at.is_none()
                && k.expires_at.is_none_or(|at| at > now)
        });
        active.count() as u64
    }
}

/// Per-request usage records kept in memory by default: about 200 MB. Past it the oldest
/// go, as the retention purge would; counters and daily counts stay exact.
pub const DEFAULT_USAGE_RECORDS: usize = 1_000_000;

/// Storage in a process's memory. Cloning shares the same data.
#[derive(Debug, Clone)]
pub struct MemStore {
    state: Arc<RwLock<State>>,
    /// Counted for tests only: an atomic add on every verification is not free.
    #[cfg(feature = "testing")]
    hash_lookups: Arc<std::sync::atomic::AtomicU64>,
    /// The most per-request usage records kept: a long-running in-memory server under load
    /// would otherwise grow by every verification it answers until the hourly purge, which
    /// keeps 30 days.
    usage_records: usize,
}

impl Default for MemStore {
    fn default() -> Self {
        Self::with_usage_records(DEFAULT_USAGE_RECORDS)
    }
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that keeps at most `records` per-request usage records, the newest.
    pub fn with_usage_records(records: usize) -> Self {
        Self {
            state: Arc::default(),
            #[cfg(feature = "testing")]
            hash_lookups: Arc::default(),
            usage_records: records,
        }
    }

    /// How many times `find_by_hash` was called; lets tests prove a lookup did not happen.
    #[cfg(feature = "testing")]
    pub fn hash_lookups(&self) -> u64 {
        self.hash_lookups.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn write<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.write().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Atomic for MemStore {
    /// Every write of `work` to a journaled table records the entry's value from before;
    /// `Rollback` puts those back, and so does abandoning `work` half-way (as PostgreSQL
    /// closes the connection of an abandoned unit). A unit inside a unit is a savepoint:
    /// its rollback undoes its own writes only, and its commit leaves them to the outer one.
    async fn atomically<T, F: Future<Output = Outcome<T>>>(&self, work: F) -> Result<T, StorageError> {
        let outer = undo::current_unit();
        let unit = outer.unwrap_or_else(undo::new_unit);
        let mut pending = Pending { store: self, unit, since: undo::savepoint(), outermost: outer.is_none() };
        let outcome = match outer {
            Some(_) => work.await,
            None => undo::scope(unit, work).await,
        };
        Ok(match outcome {
            Outcome::Commit(value) => {
                pending.commit();
                value
            }
            Outcome::Rollback(value) => value,
        })
    }
}

/// A unit of work under way: undone when dropped, unless it committed.
struct Pending<'a> {
    store: &'a MemStore,
    unit: u64,
    since: u64,
    outermost: bool,
}

impl Pending<'_> {
    fn commit(&mut self) {
        if self.outermost {
            self.store.write(|state| state.forget(self.unit));
        }
        // Nothing left to undo on drop.
        self.since = u64::MAX;
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.since != u64::MAX {
            self.store.write(|state| {
                state.undo(self.unit, self.since);
                if self.outermost {
                    state.forget(self.unit);
                }
            });
        }
    }
}

impl Store for MemStore {
    fn ping(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
        ready(Ok(()))
    }
}
