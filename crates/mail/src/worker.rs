//! The mail worker: every instance runs one, on a thread of its own; each round claims the
//! due mails (one instance per mail, `FOR UPDATE SKIP LOCKED` on PostgreSQL), sends them,
//! and records each outcome; every few seconds it counts what waits, for `GET /metrics`. A
//! failed round is logged and the loop goes on.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use keyward_domain::{
    OsRandom, Store, SystemClock, key_service::mail::deliver_due_mail, mail::MailOutcome, ports::MailSender,
};

#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    /// How long the worker waits when nothing was due.
    pub idle: Duration,
    /// The most mails one round sends.
    pub batch: u32,
    /// How often the backlog is counted.
    pub count_every: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self { idle: Duration::from_millis(500), batch: 16, count_every: Duration::from_secs(1) }
    }
}

/// What waits in the outbox, as last counted: `keyward.mail.pending`, `.delayed` (failed at
/// least once: stuck), `.failed` (given up on), and mails sent by this instance.
#[derive(Debug, Default)]
pub struct MailGauges {
    pub pending: AtomicU64,
    pub delayed: AtomicU64,
    pub failed: AtomicU64,
    pub sent: AtomicU64,
}

/// Starts the worker. It runs until `stop` turns true (or its sender is dropped), after the
/// round in progress.
pub fn spawn_worker<S: Store, M: MailSender + 'static>(
    store: S,
    sender: Arc<M>,
    gauges: Arc<MailGauges>,
    settings: WorkerSettings,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("keyward-mail".into()).spawn(move || {
        runtime.block_on(async move {
            let mut counted: Option<std::time::Instant> = None;
            while !*stop.borrow() {
                if counted.is_none_or(|at| at.elapsed() >= settings.count_every) {
                    counted = Some(std::time::Instant::now());
                    match store.mail_backlog().await {
                        Ok(backlog) => {
                            gauges.pending.store(backlog.pending, Ordering::Relaxed);
                            gauges.delayed.store(backlog.delayed, Ordering::Relaxed);
                            gauges.failed.store(backlog.failed, Ordering::Relaxed);
                        }
                        Err(error) => tracing::warn!(%error, "the mail outbox could not be counted"),
                    }
                }
                let round = deliver_due_mail(&store, &*sender, &SystemClock, &OsRandom, settings.batch).await;
                match round {
                    Ok(outcomes) => {
                        let full = outcomes.len() == settings.batch as usize;
                        for (id, tries, outcome) in outcomes {
                            match outcome {
                                MailOutcome::Sent { .. } => {
                                    gauges.sent.fetch_add(1, Ordering::Relaxed);
                                    tracing::info!(mail_id = %id, tries, "mail sent");
                                }
                                MailOutcome::Failed { error, next_at } => tracing::warn!(
                                    mail_id = %id, tries, %error, retry_at = ?next_at,
                                    "a mail could not be sent; it is tried again later unless retry_at is None"
                                ),
                            }
                        }
                        // A full batch: more may be due at once.
                        if full {
                            continue;
                        }
                    }
                    Err(error) => tracing::warn!(%error, "mail round failed; retrying"),
                }
                tokio::select! {
                    () = tokio::time::sleep(settings.idle) => {}
                    changed = stop.changed() => if changed.is_err() { break },
                }
            }
            tracing::info!("the mail worker stopped");
        });
    })
}
