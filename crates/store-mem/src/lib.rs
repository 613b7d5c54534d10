//! In-memory storage: the embedded default (`keyward serve` with no database) and a fast
//! double for tests. It implements the same ports as `store-pg` and passes the same
//! conformance suite, so trying Keyward out behaves like running it in production.
//!
//! Architecture invariant: every port method takes the lock once, does its work without
//! awaiting, and releases it; no lock is held across an `.await`. Data is lost on exit.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    future::{Future, ready},
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use keyward_domain::{
    Account, AccountId, EventId, Key, KeyHash, KeyId, KeyKind, KeyStatus, Keyspace, KeyspaceId, SessionId, UserId,
    audit::{AuditEvent, AuditFilter, AuditRecord, chain_hash},
    idempotency::{Claim, LEASE, StoredResponse, lapsed},
    password::PasswordHash,
    people::{Email, Membership, Role, Session, User},
    ports::{
        AccountStore, Atomic, AuditStore, CreateUserError, DeleteKeyspaceError, IdempotencyStore, InsertKeyError,
        InsertKeyspaceError, KeyCounts, KeyFilter, KeyPage, KeyStore, KeyspaceStore, MembershipError, Outcome,
        PageRequest, SessionStore, StorageError, Store, UpdateError, UpdateKeyspaceError, UsageStore, UserStore,
        VerifiableKey,
    },
    usage::{AccountStats, UsageEntry, UsagePosition, UsageRecord, UsageSummary, day_and_month_start},
};
use time::OffsetDateTime;

#[derive(Debug, Default)]
struct State {
    accounts: HashMap<AccountId, Account>,
    keyspaces: BTreeMap<KeyspaceId, Keyspace>,
    keys: BTreeMap<KeyId, Key>,
    by_hash: HashMap<KeyHash, KeyId>,
    users: BTreeMap<UserId, User>,
    memberships: BTreeMap<(AccountId, UserId), Membership>,
    invitations: BTreeMap<(AccountId, UserId), keyward_domain::people::Invitation>,
    sessions: HashMap<SessionId, Session>,
    audit: BTreeMap<EventId, AuditRecord>,
    /// The last (seq, hash) of each chain.
    audit_heads: HashMap<Option<AccountId>, (i64, [u8; 32])>,
    idempotency: HashMap<(AccountId, String), IdempotencyEntry>,
    /// Per-request records as stored, oldest first, each with its position (`seq`: the
    /// order of writing, never reused, so a purge moves no cursor).
    usage: VecDeque<UsageEntry>,
    next_usage_seq: i64,
    /// Requests per key per UTC day (days since the epoch).
    daily: HashMap<(KeyId, i64), u64>,
}

#[derive(Debug, Clone)]
struct IdempotencyEntry {
    fingerprint: [u8; 32],
    created_at: OffsetDateTime,
    lease_until: Option<OffsetDateTime>,
    response: Option<StoredResponse>,
}

impl State {
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
    hash_lookups: Arc<AtomicU64>,
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
        Self { state: Arc::default(), hash_lookups: Arc::default(), usage_records: records }
    }

    /// How many times `find_by_hash` was called; lets tests prove a lookup did not happen.
    pub fn hash_lookups(&self) -> u64 {
        self.hash_lookups.load(Ordering::Relaxed)
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn write<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.write().unwrap_or_else(PoisonError::into_inner))
    }
}

fn matches(key: &Key, account: AccountId, filter: &KeyFilter, now: OffsetDateTime) -> bool {
    key.account_id == account
        && key.kind == filter.kind
        && filter.keyspace_id.is_none_or(|ks| key.keyspace_id == Some(ks))
        && filter.environment.is_none_or(|env| key.environment == env)
        && filter.status.is_none_or(|status| key.status(now) == status)
        && filter.owner_id.as_ref().is_none_or(|owner| key.owner_id.as_ref() == Some(owner))
}

impl KeyStore for MemStore {
    fn insert_keys(
        &self,
        keys: &[Key],
        max_keys: Option<u64>,
    ) -> impl Future<Output = Result<(), InsertKeyError>> + Send {
        ready(self.write(|state| {
            if let Some(index) = keys.iter().position(|k| state.by_hash.contains_key(&k.hash)) {
                return Err(InsertKeyError::DuplicateHash { index });
            }
            if let (Some(max), Some(first)) = (max_keys, keys.first()) {
                let now = first.created_at;
                let adding = keys.iter().filter(|k| k.kind == KeyKind::Service).count() as u64;
                if state.active_service_keys(first.account_id, now) + adding > max {
                    return Err(InsertKeyError::KeyLimitReached);
                }
            }
            for key in keys {
                state.by_hash.insert(key.hash, key.id);
                state.keys.insert(key.id, key.clone());
            }
            Ok(())
        }))
    }

    fn find_by_hash(
        &self,
        hash: &KeyHash,
    ) -> impl Future<Output = Result<Option<Arc<VerifiableKey>>, StorageError>> + Send {
        self.hash_lookups.fetch_add(1, Ordering::Relaxed);
        ready(Ok(self.read(|state| {
            let key = state.keys.get(state.by_hash.get(hash)?)?.clone();
            let ip_policy =
                key.keyspace_id.and_then(|ks| state.keyspaces.get(&ks)).map(|ks| ks.ip_policy).unwrap_or_default();
            Some(Arc::new(VerifiableKey::new(key, ip_policy)))
        })))
    }

    fn get_key(&self, account: AccountId, id: KeyId) -> impl Future<Output = Result<Option<Key>, StorageError>> + Send {
        ready(Ok(self.read(|state| state.keys.get(&id).filter(|k| k.account_id == account).cloned())))
    }

    fn list_keys(
        &self,
        account: AccountId,
        filter: &KeyFilter,
        page: PageRequest,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<KeyPage, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            let matching = || state.keys.values().rev().filter(|k| matches(k, account, filter, now));
            let total = matching().count() as u64;
            let limit = page.limit as usize;
            let mut keys: Vec<Key> = matching()
                .filter(|k| page.before.is_none_or(|before| k.id < before))
                .take(limit + 1)
                .cloned()
                .collect();
            let has_more = keys.len() > limit;
            keys.truncate(limit);
            KeyPage { keys, total, has_more }
        })))
    }

    fn update_key(&self, before: &Key, after: &Key) -> impl Future<Output = Result<(), UpdateError>> + Send {
        ready(self.write(|state| {
            let stored = state
                .keys
                .get_mut(&after.id)
                .filter(|k| k.account_id == after.account_id)
                .ok_or(UpdateError::NotFound)?;
            macro_rules! changed {
                ($($field:ident),+) => {$(
                    if before.$field != after.$field {
                        stored.$field = after.$field.clone();
                    }
                )+};
            }
            changed!(
                name,
                description,
                scopes,
                resource,
                tier,
                rate_limits,
                quota,
                ip_allowlist,
                expires_at,
                idle_timeout_seconds,
                owner_id,
                metadata,
                is_active
            );
            stored.revoked_at = stored.revoked_at.or(after.revoked_at);
            stored.updated_at = after.updated_at;
            Ok(())
        }))
    }

    fn rotate_key(&self, old: &Key, new: &Key) -> impl Future<Output = Result<(), UpdateError>> + Send {
        ready(self.write(|state| {
            let stored = state
                .keys
                .get_mut(&old.id)
                .filter(|k| k.account_id == old.account_id && k.revoked_at.is_none())
                .ok_or(UpdateError::NotFound)?;
            stored.expires_at = old.expires_at;
            stored.rotated_to = old.rotated_to;
            stored.updated_at = old.updated_at;
            state.by_hash.insert(new.hash, new.id);
            state.keys.insert(new.id, new.clone());
            Ok(())
        }))
    }

    fn touch_key(&self, id: KeyId, at: OffsetDateTime) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.write(|state| {
            if let Some(key) = state.keys.get_mut(&id) {
                key.last_used_at = Some(key.last_used_at.map_or(at, |last| last.max(at)));
            }
        });
        ready(Ok(()))
    }

    fn live_temporary_keys(
        &self,
        account: AccountId,
        user: UserId,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Vec<Key>, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            state
                .keys
                .values()
                .filter(|k| k.account_id == account && k.kind == KeyKind::Temporary)
                .filter(|k| k.created_by == keyward_domain::key::Actor::User(user) && k.revoked_at.is_none())
                .filter(|k| k.expires_at.is_none_or(|at| at > now))
                .cloned()
                .collect()
        })))
    }

    fn list_account_keys(&self, account: AccountId) -> impl Future<Output = Result<Vec<Key>, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            state
                .keys
                .values()
                .rev()
                .filter(|k| k.account_id == account && k.kind != KeyKind::Service)
                .take(1_000)
                .cloned()
                .collect()
        })))
    }

    fn count_account_keys(
        &self,
        account: AccountId,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<u64, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            let live = |k: &&Key| {
                k.account_id == account
                    && k.kind != KeyKind::Service
                    && k.revoked_at.is_none()
                    && k.expires_at.is_none_or(|at| at > now)
            };
            state.keys.values().filter(live).count() as u64
        })))
    }

    fn count_keys(
        &self,
        account: AccountId,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<KeyCounts, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            let revoked = state
                .keys
                .values()
                .filter(|k| k.account_id == account && k.kind == KeyKind::Service && k.revoked_at.is_some())
                .count() as u64;
            KeyCounts { active: state.active_service_keys(account, now), revoked }
        })))
    }
}

impl AccountStore for MemStore {
    fn create_account(
        &self,
        account: &Account,
        default_keyspace: &Keyspace,
        first_key: Option<&Key>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.write(|state| {
            state.accounts.insert(account.id, account.clone());
            state.keyspaces.insert(default_keyspace.id, default_keyspace.clone());
            if let Some(key) = first_key {
                state.by_hash.insert(key.hash, key.id);
                state.keys.insert(key.id, key.clone());
            }
        });
        ready(Ok(()))
    }

    fn get_account(&self, id: AccountId) -> impl Future<Output = Result<Option<Account>, StorageError>> + Send {
        ready(Ok(self.read(|state| state.accounts.get(&id).cloned())))
    }
}

impl KeyspaceStore for MemStore {
    fn insert_keyspace(&self, keyspace: &Keyspace) -> impl Future<Output = Result<(), InsertKeyspaceError>> + Send {
        ready(self.write(|state| {
            let taken =
                state.keyspaces.values().any(|k| k.account_id == keyspace.account_id && k.name == keyspace.name);
            if taken {
                return Err(InsertKeyspaceError::DuplicateName);
            }
            state.keyspaces.insert(keyspace.id, keyspace.clone());
            Ok(())
        }))
    }

    fn get_keyspace(
        &self,
        account: AccountId,
        id: KeyspaceId,
    ) -> impl Future<Output = Result<Option<Keyspace>, StorageError>> + Send {
        ready(Ok(self.read(|state| state.keyspaces.get(&id).filter(|k| k.account_id == account).cloned())))
    }

    fn find_keyspace_by_name(
        &self,
        account: AccountId,
        name: &str,
    ) -> impl Future<Output = Result<Option<Keyspace>, StorageError>> + Send {
        ready(Ok(
            self.read(|state| state.keyspaces.values().find(|k| k.account_id == account && k.name == name).cloned())
        ))
    }

    fn list_keyspaces(&self, account: AccountId) -> impl Future<Output = Result<Vec<Keyspace>, StorageError>> + Send {
        ready(Ok(self.read(|state| state.keyspaces.values().filter(|k| k.account_id == account).cloned().collect())))
    }

    fn update_keyspace(&self, keyspace: &Keyspace) -> impl Future<Output = Result<(), UpdateKeyspaceError>> + Send {
        ready(self.write(|state| {
            let taken = state
                .keyspaces
                .values()
                .any(|k| k.account_id == keyspace.account_id && k.name == keyspace.name && k.id != keyspace.id);
            if taken {
                return Err(UpdateKeyspaceError::DuplicateName);
            }
            let stored = state
                .keyspaces
                .get_mut(&keyspace.id)
                .filter(|k| k.account_id == keyspace.account_id)
                .ok_or(UpdateKeyspaceError::NotFound)?;
            *stored = Keyspace { created_at: stored.created_at, ..keyspace.clone() };
            Ok(())
        }))
    }

    fn delete_keyspace(
        &self,
        account: AccountId,
        id: KeyspaceId,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<(), DeleteKeyspaceError>> + Send {
        ready(self.write(|state| {
            if state.keyspaces.get(&id).is_none_or(|k| k.account_id != account) {
                return Err(DeleteKeyspaceError::NotFound);
            }
            let in_keyspace = |k: &Key| k.keyspace_id == Some(id);
            let live = |k: &Key| !matches!(k.status(now), KeyStatus::Revoked | KeyStatus::Expired);
            if state.keys.values().any(|k| in_keyspace(k) && live(k)) {
                return Err(DeleteKeyspaceError::NotEmpty);
            }
            let doomed: Vec<(KeyId, KeyHash)> =
                state.keys.values().filter(|k| in_keyspace(k)).map(|k| (k.id, k.hash)).collect();
            for (key_id, hash) in doomed {
                state.keys.remove(&key_id);
                state.by_hash.remove(&hash);
            }
            state.keyspaces.remove(&id);
            Ok(())
        }))
    }
}

impl UserStore for MemStore {
    fn create_user(
        &self,
        user: &User,
        membership: Option<&Membership>,
    ) -> impl Future<Output = Result<(), CreateUserError>> + Send {
        ready(self.write(|state| {
            if state.users.values().any(|u| u.email == user.email) {
                return Err(CreateUserError::DuplicateEmail);
            }
            state.users.insert(user.id, user.clone());
            if let Some(m) = membership {
                state.memberships.insert((m.account_id, m.user_id), *m);
            }
            Ok(())
        }))
    }

    fn find_user_by_email(&self, email: &Email) -> impl Future<Output = Result<Option<User>, StorageError>> + Send {
        ready(Ok(self.read(|state| state.users.values().find(|u| &u.email == email).cloned())))
    }

    fn get_user(&self, id: UserId) -> impl Future<Output = Result<Option<User>, StorageError>> + Send {
        ready(Ok(self.read(|state| state.users.get(&id).cloned())))
    }

    fn set_password_hash(
        &self,
        id: UserId,
        hash: &PasswordHash,
        change_required: bool,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<(), UpdateError>> + Send {
        ready(self.write(|state| {
            let user = state.users.get_mut(&id).ok_or(UpdateError::NotFound)?;
            user.password_hash = hash.clone();
            user.password_change_required = change_required;
            user.updated_at = at;
            Ok(())
        }))
    }

    fn memberships_of(
        &self,
        user: UserId,
    ) -> impl Future<Output = Result<Vec<(Membership, String)>, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            let mut found: Vec<(Membership, String)> = state
                .memberships
                .values()
                .filter(|m| m.user_id == user)
                .filter_map(|m| state.accounts.get(&m.account_id).map(|a| (*m, a.name.clone())))
                .collect();
            found.sort_by_key(|(m, _)| (m.created_at, m.account_id));
            found
        })))
    }

    fn get_membership(
        &self,
        account: AccountId,
        user: UserId,
    ) -> impl Future<Output = Result<Option<Membership>, StorageError>> + Send {
        ready(Ok(self.read(|state| state.memberships.get(&(account, user)).copied())))
    }

    fn members(
        &self,
        account: AccountId,
    ) -> impl Future<Output = Result<Vec<(User, Membership)>, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            let mut found: Vec<(User, Membership)> = state
                .memberships
                .values()
                .filter(|m| m.account_id == account)
                .filter_map(|m| state.users.get(&m.user_id).map(|u| (u.clone(), *m)))
                .collect();
            found.sort_by_key(|(u, m)| (m.created_at, u.id));
            found
        })))
    }

    fn add_membership(&self, membership: &Membership) -> impl Future<Output = Result<(), MembershipError>> + Send {
        ready(self.write(|state| {
            let key = (membership.account_id, membership.user_id);
            if state.memberships.contains_key(&key) {
                return Err(MembershipError::Duplicate);
            }
            state.memberships.insert(key, *membership);
            Ok(())
        }))
    }

    fn invite(
        &self,
        invitation: &keyward_domain::people::Invitation,
    ) -> impl Future<Output = Result<(), MembershipError>> + Send {
        ready(self.write(|state| {
            let key = (invitation.account_id, invitation.user_id);
            if state.memberships.contains_key(&key) {
                return Err(MembershipError::Duplicate);
            }
            state.invitations.insert(key, invitation.clone());
            Ok(())
        }))
    }

    fn invitations_of(
        &self,
        user: UserId,
    ) -> impl Future<Output = Result<Vec<(keyward_domain::people::Invitation, String)>, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            let mut found: Vec<_> = state
                .invitations
                .values()
                .filter(|i| i.user_id == user)
                .filter_map(|i| state.accounts.get(&i.account_id).map(|a| (i.clone(), a.name.clone())))
                .collect();
            found.sort_by_key(|(i, _)| (i.created_at, i.account_id));
            found
        })))
    }

    fn answer_invitation(
        &self,
        account: AccountId,
        user: UserId,
        accept: bool,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<Option<Membership>, MembershipError>> + Send {
        ready(self.write(|state| {
            let invitation = state.invitations.remove(&(account, user)).ok_or(MembershipError::NotFound)?;
            if !accept {
                return Ok(None);
            }
            if state.memberships.contains_key(&(account, user)) {
                return Err(MembershipError::Duplicate);
            }
            let membership = Membership { user_id: user, account_id: account, role: invitation.role, created_at: at };
            state.memberships.insert((account, user), membership);
            Ok(Some(membership))
        }))
    }

    fn set_role(
        &self,
        account: AccountId,
        user: UserId,
        role: Role,
    ) -> impl Future<Output = Result<(), MembershipError>> + Send {
        ready(self.write(|state| {
            let owners =
                state.memberships.values().filter(|m| m.account_id == account && m.role == Role::Owner).count();
            let membership = state.memberships.get_mut(&(account, user)).ok_or(MembershipError::NotFound)?;
            if membership.role == Role::Owner && role != Role::Owner && owners == 1 {
                return Err(MembershipError::LastOwner);
            }
            membership.role = role;
            Ok(())
        }))
    }

    fn remove_membership(
        &self,
        account: AccountId,
        user: UserId,
    ) -> impl Future<Output = Result<(), MembershipError>> + Send {
        ready(self.write(|state| {
            let owners =
                state.memberships.values().filter(|m| m.account_id == account && m.role == Role::Owner).count();
            let membership = state.memberships.get(&(account, user)).ok_or(MembershipError::NotFound)?;
            if membership.role == Role::Owner && owners == 1 {
                return Err(MembershipError::LastOwner);
            }
            state.memberships.remove(&(account, user));
            state.sessions.retain(|_, s| !(s.account_id == account && s.user_id == user));
            Ok(())
        }))
    }
}

impl SessionStore for MemStore {
    fn insert_session(&self, session: &Session) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.write(|state| state.sessions.insert(session.id, session.clone()));
        ready(Ok(()))
    }

    fn find_session(
        &self,
        token_hash: &[u8; 32],
    ) -> impl Future<Output = Result<Option<Session>, StorageError>> + Send {
        ready(Ok(self.read(|state| state.sessions.values().find(|s| &s.token_hash == token_hash).cloned())))
    }

    fn touch_session(
        &self,
        id: SessionId,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.write(|state| {
            if let Some(session) = state.sessions.get_mut(&id) {
                session.last_seen_at = session.last_seen_at.max(at);
            }
        });
        ready(Ok(()))
    }

    fn set_step_up(&self, id: SessionId, at: OffsetDateTime) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.write(|state| {
            if let Some(session) = state.sessions.get_mut(&id) {
                session.step_up_at = Some(at);
            }
        });
        ready(Ok(()))
    }

    fn delete_session(&self, id: SessionId) -> impl Future<Output = Result<Option<Session>, StorageError>> + Send {
        ready(Ok(self.write(|state| state.sessions.remove(&id))))
    }
}

impl AuditStore for MemStore {
    fn append_audit(&self, event: &AuditEvent) -> impl Future<Output = Result<AuditRecord, StorageError>> + Send {
        ready(Ok(self.write(|state| {
            let (seq, prev_hash) = state.audit_heads.get(&event.account_id).copied().unwrap_or((0, [0; 32]));
            let hash = chain_hash(&prev_hash, event);
            let record = AuditRecord { event: event.clone(), seq: seq + 1, prev_hash, hash };
            state.audit_heads.insert(event.account_id, (seq + 1, hash));
            state.audit.insert(event.id, record.clone());
            record
        })))
    }

    fn list_audit(
        &self,
        account: AccountId,
        filter: &AuditFilter,
        limit: u32,
        before: Option<EventId>,
    ) -> impl Future<Output = Result<Vec<AuditRecord>, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            let range = match before {
                Some(before) => state.audit.range(..before),
                None => state.audit.range(..),
            };
            range
                .rev()
                .filter(|(_, r)| r.event.account_id == Some(account) && filter.matches(&r.event))
                .take(limit as usize)
                .map(|(_, r)| r.clone())
                .collect()
        })))
    }

    fn audit_chain(
        &self,
        account: Option<AccountId>,
        after_seq: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<AuditRecord>, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            let mut chain: Vec<AuditRecord> =
                state.audit.values().filter(|r| r.event.account_id == account && r.seq > after_seq).cloned().collect();
            chain.sort_by_key(|r| r.seq);
            chain.truncate(limit as usize);
            chain
        })))
    }

    fn audit_chains(&self) -> impl Future<Output = Result<Vec<Option<AccountId>>, StorageError>> + Send {
        ready(Ok(self.read(|state| state.audit_heads.keys().copied().collect())))
    }

    fn purge_audit(
        &self,
        account: Option<AccountId>,
        before: OffsetDateTime,
    ) -> impl Future<Output = Result<u64, StorageError>> + Send {
        ready(Ok(self.write(|state| {
            let before_count = state.audit.len();
            state.audit.retain(|_, r| r.event.account_id != account || r.event.ts >= before);
            (before_count - state.audit.len()) as u64
        })))
    }
}

impl IdempotencyStore for MemStore {
    fn claim_idempotency(
        &self,
        account: AccountId,
        key: &str,
        fingerprint: [u8; 32],
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Claim, StorageError>> + Send {
        ready(Ok(self.write(|state| {
            let slot = (account, key.to_owned());
            if let Some(entry) = state.idempotency.get(&slot) {
                match &entry.response {
                    Some(response) if !lapsed(entry.created_at, None, now) => {
                        return Claim::Completed { fingerprint: entry.fingerprint, response: response.clone() };
                    }
                    None if !lapsed(entry.created_at, entry.lease_until, now) => {
                        return Claim::InFlight { fingerprint: entry.fingerprint };
                    }
                    _ => {}
                }
            }
            let entry =
                IdempotencyEntry { fingerprint, created_at: now, lease_until: Some(now + LEASE), response: None };
            state.idempotency.insert(slot, entry);
            Claim::Claimed
        })))
    }

    fn complete_idempotency(
        &self,
        account: AccountId,
        key: &str,
        fingerprint: [u8; 32],
        now: OffsetDateTime,
        response: &StoredResponse,
    ) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.write(|state| {
            let entry = state.idempotency.entry((account, key.to_owned())).or_insert_with(|| IdempotencyEntry {
                fingerprint,
                created_at: now,
                lease_until: None,
                response: None,
            });
            entry.response = Some(response.clone());
            entry.lease_until = None;
        });
        ready(Ok(()))
    }

    fn release_idempotency(
        &self,
        account: AccountId,
        key: &str,
    ) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.write(|state| {
            let slot = (account, key.to_owned());
            if state.idempotency.get(&slot).is_some_and(|e| e.response.is_none()) {
                state.idempotency.remove(&slot);
            }
        });
        ready(Ok(()))
    }

    fn purge_idempotency(&self, before: OffsetDateTime) -> impl Future<Output = Result<u64, StorageError>> + Send {
        ready(Ok(self.write(|state| {
            let count = state.idempotency.len();
            state.idempotency.retain(|_, e| e.created_at >= before);
            (count - state.idempotency.len()) as u64
        })))
    }
}

fn day_number(ts: OffsetDateTime) -> i64 {
    ts.unix_timestamp().div_euclid(86_400)
}

impl UsageStore for MemStore {
    fn record_usage(&self, batch: &[UsageRecord]) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.write(|state| {
            for record in batch {
                if let Some(key) = state.keys.get_mut(&record.key_id) {
                    key.usage_count += 1;
                    key.last_used_at = Some(key.last_used_at.map_or(record.ts, |at| at.max(record.ts)));
                }
                *state.daily.entry((record.key_id, day_number(record.ts))).or_default() += 1;
                let position = UsagePosition { ts: record.ts, seq: state.next_usage_seq };
                state.next_usage_seq += 1;
                state.usage.push_back(UsageEntry { position, record: record.clone() });
            }
            let excess = state.usage.len().saturating_sub(self.usage_records);
            state.usage.drain(..excess);
        });
        ready(Ok(()))
    }

    fn key_usage(
        &self,
        account: AccountId,
        key: KeyId,
        window: (Option<OffsetDateTime>, Option<OffsetDateTime>),
        before: Option<UsagePosition>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<UsageEntry>, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            let mut found: Vec<UsageEntry> = state
                .usage
                .iter()
                .filter(|e| e.record.account_id == account && e.record.key_id == key)
                .filter(|e| window.0.is_none_or(|since| e.position.ts >= since))
                .filter(|e| window.1.is_none_or(|until| e.position.ts < until))
                .filter(|e| before.is_none_or(|b| e.position < b))
                .cloned()
                .collect();
            found.sort_by_key(|e| std::cmp::Reverse(e.position));
            found.truncate(limit as usize);
            found
        })))
    }

    fn usage_summary(
        &self,
        account: AccountId,
        key: KeyId,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<UsageSummary, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            if state.keys.get(&key).is_none_or(|k| k.account_id != account) {
                return UsageSummary::default();
            }
            let (day, month) = day_and_month_start(now);
            let (today, since_month) = (day_number(day), day_number(month));
            let mut summary = UsageSummary::default();
            for ((k, d), count) in &state.daily {
                if *k == key && *d >= since_month && *d <= today {
                    summary.requests_this_month += count;
                    if *d == today {
                        summary.requests_today += count;
                    }
                }
            }
            summary
        })))
    }

    fn account_stats(
        &self,
        account: AccountId,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<AccountStats, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            let (day, _) = day_and_month_start(now);
            let verifications: Vec<&UsageRecord> = state
                .usage
                .iter()
                .map(|e| &e.record)
                .filter(|r| r.account_id == account && r.outcome.is_some())
                .collect();
            stats_of(&verifications, day)
        })))
    }

    fn purge_usage(&self, before: OffsetDateTime) -> impl Future<Output = Result<u64, StorageError>> + Send {
        ready(Ok(self.write(|state| {
            let count = state.usage.len();
            state.usage.retain(|e| e.position.ts >= before);
            (count - state.usage.len()) as u64
        })))
    }
}

/// Statistics of verification records.
fn stats_of(verifications: &[&UsageRecord], day_start: OffsetDateTime) -> AccountStats {
    let mut stats = AccountStats { verifications_total: verifications.len() as u64, ..AccountStats::default() };
    let (mut valid, mut timed, mut total_ms) = (0u64, 0u64, 0f64);
    for record in verifications {
        if record.ts >= day_start {
            stats.verifications_today += 1;
        }
        if record.outcome == Some(keyward_domain::VerifyCode::Valid) {
            valid += 1;
        }
        if let Some(ms) = record.response_time_ms {
            timed += 1;
            total_ms += f64::from(ms);
        }
        if let Some(outcome) = record.outcome {
            *stats.by_code.entry(outcome.as_str().to_owned()).or_default() += 1;
        }
    }
    stats.success_rate =
        if stats.verifications_total == 0 { 0.0 } else { valid as f64 / stats.verifications_total as f64 };
    stats.avg_response_time_ms = (timed > 0).then(|| total_ms / timed as f64);
    stats
}

impl Atomic for MemStore {
    /// In memory every port method is atomic on its own and cannot fail half-way once it
    /// has started writing (use cases check before they write), so a unit of work needs no
    /// undo: its writes stand. Durable all-or-nothing across calls is PostgreSQL's job.
    async fn atomically<T, F: Future<Output = Outcome<T>>>(&self, work: F) -> Result<T, StorageError> {
        Ok(match work.await {
            Outcome::Commit(value) | Outcome::Rollback(value) => value,
        })
    }
}

impl Store for MemStore {
    fn ping(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
        ready(Ok(()))
    }
}
