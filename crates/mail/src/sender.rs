//! The `MailSender` port over SMTP. Each mail is one multipart/alternative message (plain
//! text and HTML) with a `Message-ID` made of the outbox's id, so a mail tried again after
//! an answer that never came is recognisably the same message.

use std::time::Duration;

use keyward_domain::{
    mail::{Mail, SendFailure},
    ports::MailSender,
};
use lettre::{
    Message, SmtpTransport, Transport,
    message::MultiPart,
    transport::smtp::{
        authentication::Credentials,
        client::{Tls, TlsParameters},
    },
};

use crate::settings::{SmtpSettings, TlsMode};

/// How long one conversation with the server may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone)]
pub struct SmtpSender {
    transport: SmtpTransport,
    from: lettre::message::Mailbox,
    /// The domain of `Message-ID`s: the sender address's.
    id_domain: String,
}

impl std::fmt::Debug for SmtpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSender").field("from", &self.from.to_string()).finish_non_exhaustive()
    }
}

impl SmtpSender {
    /// A sender for `settings`; fails only when TLS cannot be set up (no usable roots).
    pub fn new(settings: &SmtpSettings) -> Result<Self, SendFailure> {
        let tls = match settings.tls {
            TlsMode::None => Tls::None,
            mode => {
                let parameters = TlsParameters::new(settings.host.clone())
                    .map_err(|e| SendFailure(format!("TLS to the mail server cannot be set up: {e}")))?;
                if mode == TlsMode::Implicit { Tls::Wrapper(parameters) } else { Tls::Required(parameters) }
            }
        };
        let mut builder = SmtpTransport::builder_dangerous(settings.host.as_str())
            .port(settings.port)
            .tls(tls)
            .timeout(Some(SEND_TIMEOUT));
        if let (Some(user), Some(password)) = (&settings.user, &settings.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        let id_domain = settings.from.email.domain().to_owned();
        Ok(Self { transport: builder.build(), from: settings.from.clone(), id_domain })
    }

    fn message(&self, mail: &Mail) -> Result<Message, SendFailure> {
        let to = mail.to.as_str().parse().map_err(|_| SendFailure("the recipient is not an address".into()))?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.as_str())
            .message_id(Some(format!("<{}@{}>", mail.id, self.id_domain)))
            .multipart(MultiPart::alternative_plain_html(mail.text.clone(), mail.html.clone()))
            .map_err(|e| SendFailure(format!("the message cannot be built: {e}")))
    }
}

impl MailSender for SmtpSender {
    async fn send(&self, mail: &Mail) -> Result<(), SendFailure> {
        let message = self.message(mail)?;
        // lettre's blocking client, on the worker's own thread: a slow server holds nothing
        // else up.
        self.transport.send(&message).map(|_| ()).map_err(|e| SendFailure(describe(&e)))
    }
}

/// What went wrong, without anything the server might echo of the message.
fn describe(error: &lettre::transport::smtp::Error) -> String {
    if let Some(code) = error.status() {
        format!("the mail server refused it ({code})")
    } else if error.is_timeout() {
        "the mail server did not answer in time".into()
    } else if error.is_tls() {
        "TLS with the mail server failed".into()
    } else {
        "the mail server could not be reached".into()
    }
}
