//! End-to-end tests of the HTTP API: the same `App` the server runs, in process, over the
//! in-memory store and over a fresh PostgreSQL database per test.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod audit;
mod bytes;
mod errors;
mod gateway;
mod hardening;
mod helpers;
mod idempotency;
mod invitations;
mod keys;
mod leaks;
mod media;
mod passwords;
mod people;
mod ratelimits;
mod routes;
mod trust;
mod usage;
mod verify;
mod webhooks;
