//! Webhook delivery: [`HttpSender`], the domain's `WebhookSender` over HTTP, and
//! [`spawn_worker`], the loop that drains the outbox on every instance.
//!
//! The sender treats a webhook URL as what it is — input from an account that makes this
//! server send requests — and so resolves it through [`sender::GuardedResolver`], which
//! drops private, loopback and link-local addresses (unless the operator allows them),
//! connects only to an address it checked (no second lookup to rebind), follows no
//! redirect, uses no proxy from the environment, and bounds the time and the answer read.

pub mod sender;
pub mod worker;

pub use sender::HttpSender;
pub use worker::{WorkerSettings, spawn_worker};
