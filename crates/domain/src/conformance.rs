//! The storage conformance suite: one set of tests every storage adapter must pass, so the
//! embedded default and PostgreSQL behave alike. An adapter's test crate runs it with
//! [`conformance_tests!`](crate::conformance_tests), giving an async expression that yields
//! a fresh, empty store and a guard that is dropped when the test ends (a test database,
//! say, or `()`).
//!
//! The tests drive the ports both directly and through [`KeyService`], and use a
//! [`ManualClock`] so that expiry and idle timeouts are exact.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub use crate::key::tests_support::sample_key;
mod audit;
mod gateway;
mod keys;
mod leaks;
mod mail;
mod order;
mod people;
mod units;
mod webhooks;

pub use audit::*;
pub use gateway::*;
pub use keys::*;
pub use leaks::*;
pub use mail::*;
pub use order::*;
pub use people::*;
pub use units::*;
pub use webhooks::*;

use std::sync::Arc;

use time::{Duration, OffsetDateTime, macros::datetime};

use crate::{
    clock::ManualClock,
    id::{AccountId, KeyId},
    key::{KeyKind, KeyStatus, VerifiableKey},
    key_format::{Environment, KeyHash},
    key_service::{DomainConfig, KeyPatch, KeyService, NewKey, NewKeyspace, Principal},
    keyspace::{DEFAULT_KEYSPACE_NAME, IpPolicy},
    plan::Plan,
    ports::{DeleteKeyspaceError, InsertKeyError, InsertKeyspaceError, KeyFilter, PageRequest, Store, UpdateError},
    random::SeededRandom,
    ratelimit::{Decision, Rule},
};

/// Runs every conformance test against the store `$make` (an async expression) yields.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@tests $make;
            account_and_default_keyspace_are_created_together,
            keys_are_found_by_hash_only,
            duplicate_hash_rejects_the_whole_batch,
            key_limit_is_enforced_atomically,
            other_accounts_objects_are_invisible,
            listing_pages_newest_first_with_filters,
            status_filter_follows_expiry_and_idle_timeout,
            revocation_survives_a_later_update,
            a_stale_copy_undoes_no_concurrent_change,
            rotation_is_atomic,
            keyspace_names_are_unique_per_account,
            keyspace_delete_refuses_active_keys,
            key_counts_ignore_revoked_and_expired,
            leak_reports_follow_the_keyspace_policy,
            a_processed_report_is_remembered_once,
            a_key_revokes_itself,
            users_are_unique_by_email,
            the_last_owner_stays,
            invitations_are_found_by_token_and_used_once,
            the_outbox_hands_each_due_mail_to_one_claim_and_keeps_its_outcome,
            a_reset_is_used_once_and_replaced_by_a_newer_one,
            removing_a_member_ends_their_sessions,
            a_users_sessions_end_together_but_the_one_kept,
            sessions_round_trip,
            touching_a_key_only_moves_forward,
            audit_chains_are_per_account_and_verify,
            concurrent_appends_never_fork_a_chain,
            audit_lists_newest_first_with_filters,
            the_purge_removes_only_old_events,
            idempotency_keys_follow_stripe_semantics,
            a_committed_unit_of_work_keeps_everything,
            a_rolled_back_unit_of_work_leaves_nothing,
            usage_is_counted_per_key_and_day,
            the_most_used_keys_are_those_of_the_last_30_days,
            quota_spends_come_off_the_stored_balance,
            keys_of_one_instant_page_newest_first_by_id,
            keyspaces_of_one_instant_list_oldest_first_by_id,
            members_of_one_instant_list_oldest_first_by_user_id,
            audit_events_of_one_millisecond_page_by_time_then_id,
            key_events_reach_the_endpoints_that_want_them,
            an_event_commits_with_its_change_or_not_at_all,
            a_claim_is_held_by_one_worker_until_its_lease_ends,
            a_claim_shares_the_worker_between_accounts,
            failures_are_retried_listed_and_end_in_a_disabled_endpoint,
            a_rotated_secret_signs_beside_the_new_one_for_its_overlap,
            expiry_and_quota_notices_are_sent_once_per_threshold,
            route_tables_are_kept_per_keyspace_and_bind_forward_auth,
        );
    };
    (@tests $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, guard) = $make.await;
                $crate::conformance::$name(store).await;
                drop(guard);
            }
        )+
    };
}

const START: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

/// A limiter and ledger that admit everything, for tests about who may pass rather than how
/// often (native keys, which count nothing).
#[derive(Debug)]
struct Unlimited;

impl crate::ratelimit::RateLimiter for Unlimited {
    async fn check(&self, _: &[u8], _: &[Rule], _: u64, _: OffsetDateTime) -> Decision {
        Decision::UNLIMITED
    }

    async fn peek(&self, _: &[u8], _: &[Rule], _: u64, _: OffsetDateTime) -> Decision {
        Decision::UNLIMITED
    }
}

impl crate::ratelimit::QuotaLedger for Unlimited {
    async fn spend(
        &self,
        _: KeyId,
        _: &crate::quota::Quota,
        _: Option<&crate::quota::QuotaBalance>,
        _: u64,
        _: OffsetDateTime,
    ) -> crate::ratelimit::QuotaDecision {
        crate::ratelimit::QuotaDecision { allowed: true, remaining: i64::MAX }
    }
}

impl crate::ratelimit::Admission for Unlimited {}

struct Fixture<S> {
    service: KeyService<S>,
    clock: Arc<ManualClock>,
    principal: Principal,
}

async fn fixture<S: Store>(store: S, plan: Plan) -> Fixture<S> {
    let clock = Arc::new(ManualClock::new(START));
    let config = Arc::new(DomainConfig::default());
    // Each fixture draws from its own seed, so two accounts in one test get distinct ids.
    static SEED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(11);
    let seed = SEED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let service = KeyService::new(store, clock.clone(), Arc::new(SeededRandom::new(seed)), config);
    let (_, issued) = service.create_account("Acme", plan, true).await.unwrap();
    let key = issued.unwrap().key;
    let principal = Principal::for_key(&key);
    Fixture { service, clock, principal }
}

fn named(name: &str) -> NewKey {
    NewKey { name: name.into(), ..NewKey::default() }
}

fn service_keys() -> KeyFilter {
    KeyFilter { kind: KeyKind::Service, keyspace_id: None, environment: None, status: None, owner_id: None }
}

fn audit_event(account: Option<AccountId>, seconds: i64, action: &'static str, seed: u64) -> crate::audit::AuditEvent {
    let ts = START + Duration::seconds(seconds);
    crate::audit::AuditEvent {
        id: crate::id::EventId::generate(ts, &SeededRandom::new(seed)),
        ts,
        account_id: account,
        actor: crate::key::Actor::System,
        action: action.into(),
        resource_type: "key".into(),
        resource_id: Some(format!("key_{seed}")),
        result: crate::audit::AuditResult::Success,
        context: crate::audit::RequestContext {
            ip: Some("203.0.113.7".parse().unwrap()),
            user_agent: Some("curl/8".into()),
            request_id: None,
        },
        metadata: serde_json::json!({"n": seed}).as_object().unwrap().clone(),
    }
}
