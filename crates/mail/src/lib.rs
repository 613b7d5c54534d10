//! Keyward's mail adapter (issue #29): the domain's `MailSender` port over SMTP (lettre,
//! rustls), its settings from `KEYWARD_SMTP_URL` and `KEYWARD_MAIL_FROM`, and the worker
//! that drains the outbox every instance shares.

mod sender;
mod settings;
mod worker;

pub use sender::SmtpSender;
pub use settings::{SettingsError, SmtpSettings, TlsMode};
pub use worker::{MailGauges, WorkerSettings, spawn_worker};
