//! Leak response: a key found in public is recognised by its format and checksum — a
//! string that is not a key costs no lookup — and handled by its keyspace's leak policy;
//! whoever holds a key may revoke it with the key itself.
//!
//! Each change and its audit event commit together; a report that changes nothing (the
//! key was reported before, or is revoked already) writes nothing, so reports cannot be
//! used to fill the audit trail.

use super::*;
use crate::{
    audit::{Action, AuditEvent, AuditResult, RequestContext},
    ports::{Outcome, UpdateError},
};

/// The most strings one public report may carry.
pub const MAX_LEAK_REPORT: usize = 1_000;
/// The longest source (a URL) a report's key keeps; longer ones are cut.
const MAX_LEAK_SOURCE_LEN: usize = 2_048;

/// Who says a key leaked.
#[derive(Debug, Clone)]
pub enum LeakReporter {
    /// A secret scanner's signed report (`github`): what kind of place it found the key in
    /// (`content`, `commit`, …) and where.
    Scanner { name: &'static str, source: Option<String>, url: Option<String> },
    /// Anyone, through the public report endpoint; known by the request's address only.
    Public,
}

impl LeakReporter {
    fn name(&self) -> &'static str {
        match self {
            Self::Scanner { name, .. } => name,
            Self::Public => "public",
        }
    }

    /// Where the reporter found the key, cut to what a record keeps.
    fn url(&self) -> Option<String> {
        match self {
            Self::Scanner { url: Some(url), .. } => Some(url.chars().take(MAX_LEAK_SOURCE_LEN).collect()),
            _ => None,
        }
    }
}

/// What a report of one string found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeakFinding {
    /// A key Keyward issued, whatever its status now.
    Key,
    /// Not one of ours: not in the key format, a broken checksum, or no such key.
    NotAKey,
}

impl<S: Store> KeyService<S> {
    /// Handles one string reported found in public: a key of ours is marked leaked and
    /// handled by its keyspace's policy ([`LeakPolicy::effective`]) when a scanner reports
    /// it, revoked when anyone else does (whoever can show the string can use it). Account
    /// and temporary keys are always revoked: a leaked management key is never left working.
    /// Only keys in Keyward's format are recognised; imported legacy strings are not.
    pub async fn report_leak(
        &self,
        token: &str,
        reporter: &LeakReporter,
        context: &RequestContext,
    ) -> Result<LeakFinding, StorageError> {
        let Some(key) = self.reported_key(token).await? else { return Ok(LeakFinding::NotAKey) };
        let policy = match (reporter, key.kind, key.keyspace_id) {
            (LeakReporter::Scanner { .. }, KeyKind::Service, Some(keyspace)) => {
                let configured = self.store.get_keyspace(key.account_id, keyspace).await?.and_then(|k| k.leak_policy);
                LeakPolicy::effective(configured, key.environment)
            }
            _ => LeakPolicy::Revoke,
        };
        let now = self.now();
        let url = reporter.url();
        let mut after = key.clone();
        if after.leaked_at.is_none() {
            after.leaked_at = Some(now);
            // The URL, else who reported it.
            after.leak_source = Some(url.clone().unwrap_or_else(|| reporter.name().to_owned()));
        }
        match policy {
            LeakPolicy::Notify => {}
            LeakPolicy::Disable => after.is_active = false,
            LeakPolicy::Revoke => after.revoked_at = after.revoked_at.or(Some(now)),
        }
        if after == key {
            return Ok(LeakFinding::Key);
        }
        after.updated_at = now;
        let mut metadata = Metadata::new();
        metadata.insert("reporter".into(), reporter.name().into());
        metadata.insert("policy".into(), policy.as_str().into());
        if let LeakReporter::Scanner { source: Some(source), .. } = reporter {
            metadata.insert("source".into(), source.chars().take(64).collect::<String>().into());
        }
        if let Some(url) = url {
            metadata.insert("url".into(), url.into());
        }
        let event = self.key_event(Action::KeyLeak, &key, Actor::System, context, metadata, now);
        self.change_with_event(&key, &after, &event).await?;
        Ok(LeakFinding::Key)
    }

    /// The key a reported string is, if it is one of ours (checksum first: a string that is
    /// not a key costs no lookup).
    async fn reported_key(&self, token: &str) -> Result<Option<Key>, StorageError> {
        if key_format::parse(token).is_err() {
            return Ok(None);
        }
        let Some(found) = self.store.find_by_hash(&KeyHash::blake3(token)).await? else { return Ok(None) };
        self.store.get_key(found.account_id, found.id).await
    }

    /// What a reported string is, acting on nothing: the answer to a replayed report.
    pub async fn recognise_leak(&self, token: &str) -> Result<LeakFinding, StorageError> {
        Ok(if self.reported_key(token).await?.is_some() { LeakFinding::Key } else { LeakFinding::NotAKey })
    }

    /// Whether the signed report whose body hashes to `digest` was processed before. A
    /// scanner's report carries no timestamp: one captured and sent again (after the owner
    /// turned a disabled key on, say) must change nothing, so it is answered with
    /// [`KeyService::recognise_leak`] instead.
    pub async fn report_seen(&self, digest: &[u8; 32]) -> Result<bool, StorageError> {
        self.store.report_processed(digest).await
    }

    /// Records the report as processed, once all its strings were handled (a report that
    /// failed halfway is processed again when the scanner retries it).
    pub async fn report_done(&self, digest: &[u8; 32]) -> Result<(), StorageError> {
        self.store.remember_report(digest, self.now()).await
    }

    /// Revokes the key `presented` names, on the word of whoever presents it: proof of
    /// possession, as `GET /v1/keys/self`. A disabled key may be revoked too, and from any
    /// address (the allowlist guards use, not the end of use). `account`, when the caller
    /// named one (HTTP Basic), must own the key. Legacy strings count against the
    /// failed-lookup budgets of `context.ip`.
    pub async fn self_revoke<L: RateLimiter>(
        &self,
        presented: &PlaintextKey,
        account: Option<AccountId>,
        context: &RequestContext,
        limiter: &L,
    ) -> Result<Key, AuthError> {
        let found = self.lookup_counted(presented, context.ip, limiter).await?.ok_or(AuthError::Unauthorized)?;
        let now = self.now();
        let dead = matches!(found.status(now), KeyStatus::Revoked | KeyStatus::Expired);
        if dead || account.is_some_and(|account| account != found.account_id) {
            return Err(AuthError::Unauthorized);
        }
        let key = self.store.get_key(found.account_id, found.id).await?.ok_or(AuthError::Unauthorized)?;
        let after = Key { revoked_at: Some(now), updated_at: now, ..key.clone() };
        let event = self.key_event(Action::KeySelfRevoke, &key, Actor::Key(key.id), context, Metadata::new(), now);
        self.change_with_event(&key, &after, &event).await?;
        Ok(after)
    }

    fn key_event(
        &self,
        action: Action,
        key: &Key,
        actor: Actor,
        context: &RequestContext,
        metadata: Metadata,
        now: OffsetDateTime,
    ) -> AuditEvent {
        AuditEvent {
            id: EventId::generate(now, self.rng()),
            ts: now,
            account_id: Some(key.account_id),
            actor,
            action: Cow::Borrowed(action.as_str()),
            resource_type: Cow::Borrowed(action.resource_type()),
            resource_id: Some(key.id.to_string()),
            result: AuditResult::Success,
            context: context.clone(),
            metadata,
        }
    }

    /// Writes `before` → `after`, `event` and the webhook events of the change as one unit
    /// of work.
    async fn change_with_event(&self, before: &Key, after: &Key, event: &AuditEvent) -> Result<(), StorageError> {
        let store = &self.store;
        store
            .atomically(async {
                let written = match store.update_key(before, after).await {
                    Ok(()) => match store.append_audit(event).await {
                        Ok(_) => self.publish_change(before, after).await,
                        Err(e) => Err(e),
                    },
                    // Gone in between (its keyspace deleted): nothing left to act on.
                    Err(UpdateError::NotFound) => return Outcome::Commit(Ok(())),
                    Err(UpdateError::Storage(e)) => Err(e),
                };
                match written {
                    Ok(()) => Outcome::Commit(Ok(())),
                    Err(e) => Outcome::Rollback(Err(e)),
                }
            })
            .await?
    }
}
