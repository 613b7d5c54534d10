//! The HTTP sender: ureq on the blocking pool (already in the build for the OTLP
//! exporters), rustls with the system's certificate authorities.

use std::{io::Read as _, net::SocketAddr, sync::Arc};

use keyward_domain::{
    key_service::{MAX_RESPONSE_BYTES, SEND_TIMEOUT, SendResult, WebhookRequest, WebhookSender},
    webhook::url::is_public,
};
use ureq::unversioned::{
    resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver},
    transport::{DefaultConnector, NextTimeout},
};

/// What Keyward says it is to receivers.
const USER_AGENT: &str = concat!("Keyward-Webhooks/", env!("CARGO_PKG_VERSION"));

/// Resolves like the system, then keeps only the addresses a webhook may reach: the
/// connection is made to one of these, so a name that answers differently the second
/// time (DNS rebinding) cannot slip a private address past the check.
#[derive(Debug)]
pub struct GuardedResolver {
    inner: DefaultResolver,
    allow_private: bool,
}

impl Resolver for GuardedResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let resolved = self.inner.resolve(uri, config, timeout)?;
        if self.allow_private {
            return Ok(resolved);
        }
        let mut kept = self.inner.empty();
        for addr in resolved.iter().filter(|a: &&SocketAddr| is_public(a.ip())) {
            kept.push(*addr);
        }
        if kept.is_empty() {
            return Err(ureq::Error::Io(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the host resolves only to private, loopback or link-local addresses, which this instance does not send to",
            )));
        }
        Ok(kept)
    }
}

/// TLS as Keyward's outbound HTTP uses it: the system's certificate authorities, rustls
/// with ring (the webhook sender's, and the binary's fetch of GitHub's keys).
pub fn system_tls() -> ureq::tls::TlsConfig {
    let roots: Vec<_> = rustls_native_certs::load_native_certs()
        .certs
        .into_iter()
        .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    if roots.is_empty() {
        tracing::warn!("no system certificate authorities found: https requests will fail");
    }
    ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build()
}

/// Posts webhooks over HTTP(S).
#[derive(Debug, Clone)]
pub struct HttpSender {
    agent: ureq::Agent,
}

impl HttpSender {
    /// `allow_private`: whether destinations on private networks are allowed
    /// (`[webhooks] allow_private`). Trusts the system's certificate authorities.
    pub fn new(allow_private: bool) -> Self {
        let tls = system_tls();
        let config = ureq::Agent::config_builder()
            // Every status is an answer to record, not an error.
            .http_status_as_error(false)
            // A redirect could lead anywhere, a private address included: it is an answer
            // (a failure), never followed.
            .max_redirects(0)
            .max_redirects_will_error(false)
            // No HTTP_PROXY from the environment: the destination must be the one checked.
            .proxy(None)
            .timeout_global(Some(SEND_TIMEOUT))
            .user_agent(USER_AGENT)
            .tls_config(tls)
            .build();
        let resolver = GuardedResolver { inner: DefaultResolver::default(), allow_private };
        Self { agent: ureq::Agent::with_parts(config, DefaultConnector::default(), resolver) }
    }
}

impl WebhookSender for HttpSender {
    async fn send(&self, request: WebhookRequest) -> SendResult {
        let agent = self.agent.clone();
        tokio::task::spawn_blocking(move || post(&agent, &request))
            .await
            .unwrap_or_else(|e| SendResult::Failed(format!("the delivery task failed: {e}")))
    }
}

fn post(agent: &ureq::Agent, request: &WebhookRequest) -> SendResult {
    let sent = agent
        .post(request.url.as_str())
        .header("content-type", "application/json")
        .header("webhook-id", request.message_id.to_string())
        .header("webhook-timestamp", request.timestamp.to_string())
        .header("webhook-signature", &request.signature)
        .send(request.body.as_bytes());
    match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            let mut body = Vec::new();
            // Only the start is kept; a receiver that answers without end is cut off.
            let read = response.into_body().into_reader().take(MAX_RESPONSE_BYTES).read_to_end(&mut body);
            if let Err(e) = read
                && body.is_empty()
            {
                return SendResult::Answered { status, body: format!("(the answer could not be read: {e})") };
            }
            SendResult::Answered { status, body: String::from_utf8_lossy(&body).into_owned() }
        }
        Err(e) => SendResult::Failed(e.to_string()),
    }
}
