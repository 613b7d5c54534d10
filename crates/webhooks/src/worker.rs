//! The delivery worker: every instance runs one. It keeps up to `slots` deliveries in
//! flight, claiming more as soon as one ends (one instance per delivery, `FOR UPDATE SKIP
//! LOCKED` on PostgreSQL), and every few seconds it looks for the notices due
//! (`key.expiring`, `quota.low`, `quota.exhausted`). A failed claim or try is logged and
//! the loop goes on.
//!
//! Fair between accounts (issue #29): no account has more than `per_account` deliveries in
//! flight on an instance, claims take due deliveries round-robin between accounts, and a
//! try ends at [`SEND_TIMEOUT`] — so one account's slow or dead endpoints hold at most
//! their share of the slots, for at most the timeout each, and another account's
//! deliveries go out at the next claim, within the idle pause.
//!
//! It runs on a thread of its own with a single-threaded runtime: a delivery's bookkeeping
//! is a unit of work, whose future the domain does not promise to be `Send`, and a slow
//! receiver then never takes time from the threads that answer requests.

use std::{collections::HashMap, rc::Rc, sync::Arc, time::Duration};

use keyward_domain::{
    AccountId, Store,
    key_service::{KeyService, SEND_TIMEOUT, SendResult, WebhookRequest, WebhookSender},
    webhook::Fairness,
};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    /// How long the worker waits when nothing was due.
    pub idle: Duration,
    /// The most deliveries an instance tries at once.
    pub slots: u32,
    /// The most deliveries of one account an instance tries at once.
    pub per_account: u32,
    /// How often the notices (`key.expiring`, `quota.low`, `quota.exhausted`) are looked for.
    pub notice_scan: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self { idle: Duration::from_millis(500), slots: 16, per_account: 4, notice_scan: Duration::from_secs(5) }
    }
}

/// Starts the worker on a thread of its own. It runs until `stop` turns true (or its sender
/// is dropped): then it claims nothing more, waits for the tries in flight (each ends
/// within [`SEND_TIMEOUT`]) and returns, so that a SIGTERM loses no try half-recorded.
pub fn spawn_worker<S: Store, W: WebhookSender + 'static>(
    service: KeyService<S>,
    sender: Arc<W>,
    settings: WorkerSettings,
    stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("keyward-webhooks".into()).spawn(move || {
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, run(service, Bounded(sender), settings, stop));
    })
}

async fn run<S: Store, W: WebhookSender + 'static>(
    service: KeyService<S>,
    sender: Bounded<W>,
    settings: WorkerSettings,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let (service, sender) = (Rc::new(service), Rc::new(sender));
    let (ended, mut endings) = mpsc::unbounded_channel::<AccountId>();
    let mut in_flight = InFlight::default();
    let mut scanned: Option<std::time::Instant> = None;
    let mut stopping = false;
    while !stopping && !*stop.borrow() {
        if scanned.is_none_or(|at| at.elapsed() >= settings.notice_scan) {
            scanned = Some(std::time::Instant::now());
            if let Err(error) = service.announce_notices().await {
                tracing::warn!(%error, "webhook notice scan failed; retrying");
            }
        }
        let free = settings.slots.saturating_sub(in_flight.total());
        if free > 0 {
            match service.claim_due_deliveries(free, &in_flight.fairness(settings.per_account)).await {
                Ok(claimed) => {
                    for claim in claimed {
                        let account = claim.endpoint.account_id;
                        in_flight.start(account);
                        let (service, sender) = (service.clone(), sender.clone());
                        // The slot is given back when the try ends, however it ends.
                        let slot = Slot { account, ended: ended.clone() };
                        tokio::task::spawn_local(async move {
                            if let Err(error) = service.attempt_delivery(&*sender, claim).await {
                                tracing::warn!(%error, "a webhook delivery could not be recorded; it is tried again");
                            }
                            drop(slot);
                        });
                    }
                }
                Err(error) => tracing::warn!(%error, "claiming webhook deliveries failed; retrying"),
            }
        }
        // A try ending frees a slot (and room for its account): claim again at once then;
        // otherwise after the idle pause.
        tokio::select! {
            Some(account) = endings.recv() => in_flight.end(account),
            () = tokio::time::sleep(settings.idle) => {}
            changed = stop.changed() => stopping = changed.is_err() || *stop.borrow(),
        }
        while let Ok(account) = endings.try_recv() {
            in_flight.end(account);
        }
    }
    // Stopping: the tries in flight end (recorded, or given up at the send timeout).
    while in_flight.total() > 0 {
        match endings.recv().await {
            Some(account) => in_flight.end(account),
            None => break,
        }
    }
    tracing::info!("the webhook worker stopped");
}

/// What the worker is trying now.
#[derive(Debug, Default)]
struct InFlight {
    per_account: HashMap<AccountId, u32>,
}

impl InFlight {
    fn total(&self) -> u32 {
        self.per_account.values().sum()
    }

    fn start(&mut self, account: AccountId) {
        *self.per_account.entry(account).or_default() += 1;
    }

    fn end(&mut self, account: AccountId) {
        if let Some(n) = self.per_account.get_mut(&account) {
            *n -= 1;
            if *n == 0 {
                self.per_account.remove(&account);
            }
        }
    }

    fn fairness(&self, per_account: u32) -> Fairness {
        Fairness { per_account, in_flight: self.per_account.iter().map(|(a, n)| (*a, *n)).collect() }
    }
}

/// A delivery's place in the worker; dropping it (the try ended, or its task did) frees it.
struct Slot {
    account: AccountId,
    ended: mpsc::UnboundedSender<AccountId>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let _ = self.ended.send(self.account);
    }
}

/// A sender whose tries end at [`SEND_TIMEOUT`], whatever the sender does: no receiver
/// holds a slot longer.
struct Bounded<W>(Arc<W>);

impl<W: WebhookSender> WebhookSender for Bounded<W> {
    async fn send(&self, request: WebhookRequest) -> SendResult {
        match tokio::time::timeout(SEND_TIMEOUT, self.0.send(request)).await {
            Ok(result) => result,
            Err(_) => SendResult::Failed(format!("no answer within the {} s timeout", SEND_TIMEOUT.as_secs())),
        }
    }
}
