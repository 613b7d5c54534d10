//! Keyward's domain: what an API key is, how it is written, hashed, scoped, tiered and
//! verified, and the ports (traits) through which the domain reaches storage, time and
//! randomness.
//!
//! Architecture invariant: this crate knows nothing of HTTP, SQL, async runtimes or caches.
//! It depends on no tokio, diesel, actix, moka or redis (checked by `cargo xtask tidy`).
//! The only ambient inputs are the system clock and the OS entropy source, and both come in
//! through ports ([`Clock`], [`RandomSource`]) so tests replace them.

// The model: what a key, an account, a person, a limit and an event are, and the pure
// rules about them.
pub mod account;
pub mod at_rest;
pub mod audit;
/// Gateways: the route rules a keyspace gives the forward-auth route, and request paths.
pub mod gateway;
pub mod id;
pub mod idempotency;
pub mod key;
pub mod key_format;
pub mod keyspace;
pub mod legacy;
/// E-mail: the messages, their words, and the outbox they wait in.
pub mod mail;
pub mod password;
pub mod people;
pub mod plan;
pub mod scope;
pub mod secret;
pub mod throttle;
pub mod usage;
pub mod validation;
/// What a verification answers, and the pure checks that decide it.
pub mod verdict;
/// Webhook endpoints, the outbox's messages, their signatures and retry schedule.
pub mod webhook;

// The ports: what the domain needs from the world. `ports` lists every one of them; the
// clock, randomness and limits ports live beside the types they speak of.
pub mod clock;
pub mod ports;
pub mod quota;
pub mod random;
pub mod ratelimit;

// The use cases, written against the ports only.
/// Verification embedded in another service (`Verifier`).
pub mod embedded;
pub mod error;
/// Keys, keyspaces, the account, verification and reports (`KeyService`).
pub mod key_service;
/// The usage meter every verification appends to.
pub mod meter;
/// People: login, sessions, members, account and temporary keys (`PeopleService`).
pub mod people_service;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use account::Account;
pub use clock::{Clock, ManualClock, SystemClock};
pub use id::{
    AccountId, AttemptId, EventId, InvitationId, KeyId, KeyspaceId, MailId, MessageId, RequestId, ResetId, SessionId,
    UserId, WebhookId,
};
pub use key::{Actor, Hostname, IpAllowlist, Key, KeyKind, KeyStatus, RateLimitWindow, VerifiableKey};
pub use key_format::{Environment, HashAlgorithm, KeyHash, KeyPrefix, ParsedKey};
pub use keyspace::{IpPolicy, Keyspace};
pub use plan::{Plan, PlanLimits, PlanTable, Tier, TierTable};
pub use ports::{AccountStore, KeyStore, KeyspaceStore, StorageError, Store};
pub use quota::{Quota, Refill};
pub use random::{OsRandom, RandomSource, SeededRandom};
pub use scope::{Scope, ScopeSet};
pub use secret::PlaintextKey;
pub use validation::{FieldError, FieldErrors};
pub use verdict::{VerifyCode, VerifyRequest};
