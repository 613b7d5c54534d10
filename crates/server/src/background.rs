//! What runs beside the HTTP server: the usage flusher, the retention purges, the
//! webhook worker and, with a mailer, the mail worker. Each keeps going whatever a round of
//! it meets; on shutdown the flusher writes what is left and the workers end their tries.

use std::sync::Arc;

use keyward_domain::Store;
use keyward_http::AppState;
use keyward_ratelimit::Limits;
use keyward_runtime::{retention::Retention, usage::Flusher};

use crate::{CliError, config::Config, telemetry};

/// The background work, to stop after the server.
pub(crate) struct Background {
    flusher: Flusher,
    stop: tokio::sync::watch::Sender<bool>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Background {
    /// Writes the usage left in memory and ends the workers' tries, by `deadline` at the
    /// latest; answers the records written, or `None` when the deadline came first.
    pub(crate) async fn stop(self, deadline: tokio::time::Instant) -> Option<usize> {
        let _ = self.stop.send(true);
        let workers = self.workers;
        let joined = tokio::task::spawn_blocking(move || workers.into_iter().for_each(|w| drop(w.join())));
        let (flushed, joined) =
            tokio::time::timeout_at(deadline, async { tokio::join!(self.flusher.stop_by(deadline), joined) })
                .await
                .ok()?;
        joined.ok().map(|()| flushed)
    }
}

/// Starts the background work for `state`.
pub(crate) fn spawn<S: Store>(state: &AppState<S, Limits>, config: &Config) -> Result<Background, CliError> {
    // Usage leaves memory in one batch a second.
    let flusher = keyward_runtime::usage::spawn_observed_flusher(
        state.meter.clone(),
        state.service.store().clone(),
        std::time::Duration::from_secs(1),
        telemetry::flush_observer(state.instruments.telemetry()),
    );
    keyward_runtime::retention::spawn_retention_purges(
        state.service.clone(),
        Retention { usage: time::Duration::days(i64::from(config.usage_retention_days)) },
    );
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut workers = Vec::new();
    // Every instance delivers webhooks; the outbox hands each delivery to one of them.
    let sender = Arc::new(keyward_webhooks::HttpSender::new(config.webhooks.allow_private));
    let settings = keyward_webhooks::WorkerSettings::default();
    workers.push(
        keyward_webhooks::spawn_worker(state.service.clone(), sender, settings, stopping.clone())
            .map_err(|e| CliError::Other(format!("cannot start the webhook worker: {e}")))?,
    );
    // With a mailer, every instance sends mail; the outbox hands each mail to one of them.
    if let Some(settings) = config.smtp()? {
        let sender = keyward_mail::SmtpSender::new(&settings).map_err(|e| CliError::Other(e.to_string()))?;
        let gauges = Arc::new(keyward_mail::MailGauges::default());
        let meter = state.instruments.telemetry();
        for (name, help, read) in [
            (
                "keyward.mail.pending",
                "Mails waiting to be sent (the outbox, every instance's).",
                mail_pending as fn(&keyward_mail::MailGauges) -> u64,
            ),
            (
                "keyward.mail.delayed",
                "Mails waiting that failed at least once: stuck until the mail server answers.",
                mail_delayed,
            ),
            ("keyward.mail.failed", "Mails given up on after every retry.", mail_failed),
        ] {
            let gauges = gauges.clone();
            meter.observe_gauge(name, help, move || read(&gauges));
        }
        let sent = gauges.clone();
        meter.observe_counter("keyward.mail.sent", "Mails this instance handed to the mail server.", move || {
            sent.sent.load(std::sync::atomic::Ordering::Relaxed)
        });
        let store = state.service.store().clone();
        workers.push(
            keyward_mail::spawn_worker(store, Arc::new(sender), gauges, Default::default(), stopping)
                .map_err(|e| CliError::Other(format!("cannot start the mail worker: {e}")))?,
        );
        tracing::info!(host = %settings.host, port = settings.port, tls = ?settings.tls, "mail goes out through SMTP");
    }
    Ok(Background { flusher, stop, workers })
}

fn mail_pending(g: &keyward_mail::MailGauges) -> u64 {
    g.pending.load(std::sync::atomic::Ordering::Relaxed)
}

fn mail_delayed(g: &keyward_mail::MailGauges) -> u64 {
    g.delayed.load(std::sync::atomic::Ordering::Relaxed)
}

fn mail_failed(g: &keyward_mail::MailGauges) -> u64 {
    g.failed.load(std::sync::atomic::Ordering::Relaxed)
}
