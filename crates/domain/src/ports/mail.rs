//! The mail ports (issue #29): the outbox every instance shares, and the sender.

use std::future::Future;

use time::OffsetDateTime;

use crate::{
    id::{AccountId, MailId},
    mail::{Mail, MailBacklog, MailOutcome, QueuedMail, SendFailure},
    ports::StorageError,
};

/// The outbox. Adapters MUST claim each due mail for one worker at a time (a claim moves
/// it to `lease_until`, so a worker that dies mid-send leaves it to be claimed again).
pub trait MailStore: Send + Sync {
    /// Writes `mail`, due at its `created_at`.
    fn enqueue_mail(&self, mail: &Mail) -> impl Future<Output = Result<(), StorageError>> + Send;
    /// Claims up to `limit` pending mails due at `now`, earliest first, skipping those
    /// another worker is claiming at the same moment.
    fn claim_mail(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<QueuedMail>, StorageError>> + Send;
    /// Records a try: sent (its bodies are emptied), or failed and due again at `next_at`
    /// (or given up on), counting the try.
    fn settle_mail(&self, id: MailId, outcome: &MailOutcome) -> impl Future<Output = Result<(), StorageError>> + Send;
    /// What waits, now.
    fn mail_backlog(&self) -> impl Future<Output = Result<MailBacklog, StorageError>> + Send;
    /// The account's mails not sent yet, oldest first (what the dashboard shows as delayed).
    fn pending_mail_of(
        &self,
        account: AccountId,
    ) -> impl Future<Output = Result<Vec<(Mail, u32)>, StorageError>> + Send;
}

/// Hands a mail to the mail server: an adapter (`keyward-mail`, SMTP through lettre).
pub trait MailSender: Send + Sync {
    fn send(&self, mail: &Mail) -> impl Future<Output = Result<(), SendFailure>> + Send;
}
