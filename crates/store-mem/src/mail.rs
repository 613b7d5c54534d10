//! `MailStore` and `PasswordResetStore` in memory: the mail outbox and the resets waiting.

use keyward_domain::{
    MailId,
    mail::{Mail, MailBacklog, MailOutcome, QueuedMail},
    ports::MailStore,
    ports::{PasswordReset, PasswordResetStore},
};

use crate::*;

/// A mail in the outbox and where it stands.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    mail: Mail,
    attempts: u32,
    /// When it is due next; `None` once sent or given up on.
    next_attempt_at: Option<OffsetDateTime>,
    sent: bool,
}

impl MailStore for MemStore {
    fn enqueue_mail(&self, mail: &Mail) -> impl Future<Output = Result<(), StorageError>> + Send {
        let outgoing =
            Outgoing { mail: mail.clone(), attempts: 0, next_attempt_at: Some(mail.created_at), sent: false };
        self.write(|state| state.mails.insert(mail.id, outgoing));
        ready(Ok(()))
    }

    fn claim_mail(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<QueuedMail>, StorageError>> + Send {
        ready(Ok(self.write(|state| {
            let mut due: Vec<(OffsetDateTime, MailId)> = state
                .mails
                .values()
                .filter_map(|o| o.next_attempt_at.filter(|at| *at <= now).map(|at| (at, o.mail.id)))
                .collect();
            due.sort();
            due.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            due.into_iter()
                .filter_map(|(_, id)| {
                    let outgoing = state.mails.get_mut(&id)?;
                    outgoing.next_attempt_at = Some(lease_until);
                    Some(QueuedMail { mail: outgoing.mail.clone(), attempts: outgoing.attempts })
                })
                .collect()
        })))
    }

    fn settle_mail(&self, id: MailId, outcome: &MailOutcome) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.write(|state| {
            if let Some(outgoing) = state.mails.get_mut(&id) {
                outgoing.attempts += 1;
                match outcome {
                    MailOutcome::Sent { .. } => {
                        outgoing.sent = true;
                        outgoing.next_attempt_at = None;
                        // The bodies held a link's token: gone once delivered.
                        outgoing.mail.text.clear();
                        outgoing.mail.html.clear();
                    }
                    MailOutcome::Failed { next_at, .. } => outgoing.next_attempt_at = *next_at,
                }
            }
        });
        ready(Ok(()))
    }

    fn mail_backlog(&self) -> impl Future<Output = Result<MailBacklog, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            let mut backlog = MailBacklog::default();
            for outgoing in state.mails.values().filter(|o| !o.sent) {
                match outgoing.next_attempt_at {
                    Some(_) => {
                        backlog.pending += 1;
                        if outgoing.attempts > 0 {
                            backlog.delayed += 1;
                        }
                    }
                    None => backlog.failed += 1,
                }
            }
            backlog
        })))
    }

    fn pending_mail_of(
        &self,
        account: AccountId,
    ) -> impl Future<Output = Result<Vec<(Mail, u32)>, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            let mut found: Vec<(Mail, u32)> = state
                .mails
                .values()
                .filter(|o| !o.sent && o.mail.account_id == Some(account))
                .map(|o| (o.mail.clone(), o.attempts))
                .collect();
            found.sort_by_key(|(m, _)| (m.created_at, m.id));
            found
        })))
    }
}

impl PasswordResetStore for MemStore {
    fn insert_reset(&self, reset: &PasswordReset) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.write(|state| {
            let older: Vec<[u8; 32]> =
                state.resets.values().filter(|r| r.user_id == reset.user_id).map(|r| r.token_hash).collect();
            for hash in older {
                state.resets.remove(&hash);
            }
            state.resets.insert(reset.token_hash, reset.clone());
        });
        ready(Ok(()))
    }

    fn take_reset(
        &self,
        token_hash: &[u8; 32],
    ) -> impl Future<Output = Result<Option<PasswordReset>, StorageError>> + Send {
        ready(Ok(self.write(|state| state.resets.remove(token_hash))))
    }
}

impl keyward_domain::ports::ReportStore for MemStore {
    fn report_processed(&self, digest: &[u8; 32]) -> impl Future<Output = Result<bool, StorageError>> + Send {
        ready(Ok(self.read(|state| state.reports.contains_key(digest))))
    }

    fn remember_report(
        &self,
        digest: &[u8; 32],
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.write(|state| {
            if !state.reports.contains_key(digest) {
                state.reports.insert(*digest, at);
            }
        });
        ready(Ok(()))
    }
}
