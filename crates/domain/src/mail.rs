//! E-mail (issue #29): the messages Keyward sends — an invitation's link, a password
//! reset's link. A use case writes a [`Mail`] to the outbox (`ports::MailStore`) in the
//! unit of work of the change that calls for it (an invitation is never committed without
//! its mail, nor a mail without its invitation); the worker
//! (`key_service::mail::deliver_due_mail`) claims what is due, hands it to the
//! `ports::MailSender` port, and records the outcome, retrying with the webhooks' backoff.
//! An outage of the mail server delays mail, it never loses it.

pub mod templates;

use time::OffsetDateTime;

use crate::{
    id::{AccountId, MailId},
    people::Email,
};

/// One message to one address. Its bodies hold a link's token until it is sent; stores
/// empty them once it is.
#[derive(Clone, PartialEq, Eq)]
pub struct Mail {
    pub id: MailId,
    /// The account it is sent for (an invitation's); `None` for a login's own (a reset).
    pub account_id: Option<AccountId>,
    pub to: Email,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub created_at: OffsetDateTime,
}

impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The bodies carry a link's token: never in a log line.
        f.debug_struct("Mail").field("id", &self.id).field("to", &self.to).field("subject", &self.subject).finish()
    }
}

/// A mail as claimed for a try: the message and how many tries it had.
#[derive(Debug, Clone)]
pub struct QueuedMail {
    pub mail: Mail,
    pub attempts: u32,
}

/// What a try came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailOutcome {
    Sent {
        at: OffsetDateTime,
    },
    /// Not sent; tried again at `next_at`, or never (`None`: every retry was made).
    Failed {
        error: String,
        next_at: Option<OffsetDateTime>,
    },
}

/// What waits in the outbox, for `GET /metrics` and the dashboard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailBacklog {
    /// Not sent yet, still to be tried.
    pub pending: u64,
    /// Of those, the ones that failed at least once: mail that is stuck.
    pub delayed: u64,
    /// Given up on after every retry.
    pub failed: u64,
}

/// Why a send failed. Every failure is tried again later: a refused address today may be a
/// full mailbox that empties tomorrow, and an SMTP server's 5xx is rare from a relay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SendFailure(pub String);

/// How long a claimed mail is the claimer's: longer than a send may take.
pub const MAIL_LEASE: time::Duration = time::Duration::seconds(60);
