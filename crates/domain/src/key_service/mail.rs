//! The mail worker's round (issue #29), over the outbox and sender ports.

use crate::{
    Clock, RandomSource,
    id::MailId,
    mail::{MAIL_LEASE, MailOutcome},
    ports::{MailSender, MailStore, StorageError},
    webhook::schedule::retry_delay,
};

/// One round of the worker: claims up to `batch` due mails, sends each, records each
/// outcome, and answers them (id, tries so far, outcome) for the worker to log. A storage
/// error ends the round; the claims lapse and the mails are tried again.
pub async fn deliver_due_mail<M: MailStore, S: MailSender>(
    store: &M,
    sender: &S,
    clock: &dyn Clock,
    rng: &dyn RandomSource,
    batch: u32,
) -> Result<Vec<(MailId, u32, MailOutcome)>, StorageError> {
    let now = clock.now();
    let claimed = store.claim_mail(now, now + MAIL_LEASE, batch).await?;
    let mut outcomes = Vec::with_capacity(claimed.len());
    for queued in claimed {
        let tries = queued.attempts + 1;
        let outcome = match sender.send(&queued.mail).await {
            Ok(()) => MailOutcome::Sent { at: clock.now() },
            Err(failure) => MailOutcome::Failed {
                error: failure.0,
                next_at: retry_delay(tries, rng).map(|delay| clock.now() + delay),
            },
        };
        store.settle_mail(queued.mail.id, &outcome).await?;
        outcomes.push((queued.mail.id, tries, outcome));
    }
    Ok(outcomes)
}
