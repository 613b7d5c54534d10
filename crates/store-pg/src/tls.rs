//! TLS to PostgreSQL, as libpq's `sslmode` and `sslrootcert` in `DATABASE_URL` ask for it.
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable`, `allow`, `prefer` (absent: `prefer`) | no | — |
//! | `require` | yes | not checked; with `sslrootcert`, as `verify-ca` (libpq does the same) |
//! | `verify-ca` | yes | chains to the authorities |
//! | `verify-full` | yes | chains to the authorities and names the host |
//!
//! The authorities are `sslrootcert=<PEM file>`, or the system's (`sslrootcert=system`, or
//! no `sslrootcert`: libpq would read `~/.postgresql/root.crt`; a service has no such home).
//! `prefer` does not try TLS: a managed database that needs it says `require` or better.
//!
//! tokio-postgres knows only `disable`, `prefer` and `require` and rejects `sslrootcert`, so
//! the URL it is given says `require` and nothing more; the checking is rustls's, here.

use std::sync::Arc;

use diesel::ConnectionError;
use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::WebPkiSupportedAlgorithms,
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// What `DATABASE_URL` asks of TLS could not be set up. Never holds the URL (it may hold
/// a password).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("sslmode={0} is not one of disable, allow, prefer, require, verify-ca, verify-full")]
    Mode(String),
    #[error("sslrootcert: {0}")]
    RootCert(String),
    #[error("the system's certificate authorities could not be read: {0}")]
    System(String),
}

/// Opens connections to the database a URL names, with TLS when it asks for it. Built once
/// (the authorities are read once) and shared by every connection the pool opens.
#[derive(Clone)]
pub struct Connector {
    /// The URL tokio-postgres understands.
    url: Arc<str>,
    tls: Option<MakeRustlsConnect>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").field("tls", &self.tls.is_some()).finish_non_exhaustive()
    }
}

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

impl Connector {
    pub fn new(database_url: &str) -> Result<Self, TlsError> {
        let (url, params) = split_tls_params(database_url);
        let root_cert = params.root_cert.as_deref().filter(|r| *r != "system");
        let check = match params.mode.as_deref() {
            None | Some("disable" | "allow" | "prefer") => None,
            Some("require") if root_cert.is_some() => Some(Check::Chain),
            Some("require") => Some(Check::Nothing),
            Some("verify-ca") => Some(Check::Chain),
            Some("verify-full") => Some(Check::ChainAndName),
            Some(other) => return Err(TlsError::Mode(other.to_owned())),
        };
        let tls = match check {
            None => None,
            Some(check) => Some(MakeRustlsConnect::new(client_config(check, root_cert)?)),
        };
        Ok(Self { url: url.into(), tls })
    }

    /// Whether connections use TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A new connection.
    pub async fn connect(&self) -> Result<AsyncPgConnection, ConnectionError> {
        let Some(tls) = &self.tls else { return AsyncPgConnection::establish(&self.url).await };
        let (client, connection) = tokio_postgres::connect(&self.url, tls.clone())
            .await
            .map_err(|e| ConnectionError::BadConnection(with_causes(&e)))?;
        AsyncPgConnection::try_from_client_and_connection(client, connection).await
    }
}

/// An error and its causes ("error performing TLS handshake: invalid peer certificate:
/// UnknownIssuer"): the first line alone does not say what to fix.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// The TLS parameters of a URL.
#[derive(Debug, Default, PartialEq, Eq)]
struct TlsParams {
    mode: Option<String>,
    root_cert: Option<String>,
}

/// `url` with `sslrootcert` removed and `sslmode` as tokio-postgres knows it, and the TLS
/// parameters it had. A key=value connection string is returned as it is.
fn split_tls_params(url: &str) -> (String, TlsParams) {
    let mut params = TlsParams::default();
    let Some((base, query)) = url.split_once('?') else { return (url.to_owned(), params) };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return (url.to_owned(), params);
    }
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                let mode = percent_decode(value);
                kept.push(match mode.as_str() {
                    "require" | "verify-ca" | "verify-full" => "sslmode=require".to_owned(),
                    "allow" => "sslmode=disable".to_owned(),
                    _ => pair.to_owned(),
                });
                params.mode = Some(mode);
            }
            "sslrootcert" => params.root_cert = Some(percent_decode(value)),
            _ => kept.push(pair.to_owned()),
        }
    }
    let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    (url, params)
}

/// `%XX` escapes decoded (a path may hold spaces or `&`); anything malformed kept as is.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn client_config(check: Check, root_cert: Option<&str>) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::RootCert(e.to_string()))?;
    let algorithms = provider.signature_verification_algorithms;
    let verifier: Arc<dyn ServerCertVerifier> = if check == Check::Nothing {
        Arc::new(Lenient { chain: None, algorithms })
    } else {
        let roots = Arc::new(authorities(root_cert)?);
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| TlsError::RootCert(e.to_string()))?;
        if check == Check::Chain { Arc::new(Lenient { chain: Some(webpki), algorithms }) } else { webpki }
    };
    Ok(builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth())
}

/// The authorities of `sslrootcert` (a PEM file), or the system's.
fn authorities(root_cert: Option<&str>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    if let Some(path) = root_cert {
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(Iterator::collect)
            .map_err(|e| TlsError::RootCert(format!("{path}: {e}")))?;
        let (added, _) = roots.add_parsable_certificates(certificates);
        if added == 0 {
            return Err(TlsError::RootCert(format!("{path}: no certificate in it")));
        }
        return Ok(roots);
    }
    let system = rustls_native_certs::load_native_certs();
    if let Some(error) = system.errors.first()
        && system.certs.is_empty()
    {
        return Err(TlsError::System(error.to_string()));
    }
    roots.add_parsable_certificates(system.certs);
    Ok(roots)
}

/// `require` without authorities (nothing checked: libpq's meaning) and `verify-ca` (the
/// chain checked, not the name: a server reached through an address its certificate does
/// not list). The handshake's signatures are verified either way, so the session key is
/// the holder's of the certificate presented. `verify-full` is rustls's own verifier.
#[derive(Debug)]
struct Lenient {
    /// `None`: the certificate is not checked.
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::{CertificateError::*, Error::InvalidCertificate};
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(InvalidCertificate(NotValidForName | NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_modes_reach_tokio_postgres_as_require_without_sslrootcert() {
        let (url, params) =
            split_tls_params("postgres://u:p@db:5432/k?sslmode=verify-full&sslrootcert=/etc/ca%20bundle.pem&x=1");
        assert_eq!(url, "postgres://u:p@db:5432/k?sslmode=require&x=1");
        assert_eq!(
            params,
            TlsParams { mode: Some("verify-full".into()), root_cert: Some("/etc/ca bundle.pem".into()) }
        );
        let (url, params) = split_tls_params("postgres://db/k");
        assert_eq!((url.as_str(), params), ("postgres://db/k", TlsParams::default()));
        assert_eq!(split_tls_params("postgres://db/k?sslmode=allow").0, "postgres://db/k?sslmode=disable");
        assert_eq!(split_tls_params("postgres://db/k?sslrootcert=system").0, "postgres://db/k");
    }

    #[test]
    fn a_bad_mode_or_bundle_is_a_clear_error_without_the_url() {
        let error = Connector::new("postgres://u:secret@db/k?sslmode=verify").unwrap_err();
        assert_eq!(
            error.to_string(),
            "sslmode=verify is not one of disable, allow, prefer, require, verify-ca, verify-full"
        );
        let error = Connector::new("postgres://u:secret@db/k?sslmode=verify-full&sslrootcert=/nonexistent.pem")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("sslrootcert: /nonexistent.pem"), "{error}");
        assert!(!error.contains("secret"));
        assert!(!Connector::new("postgres://db/k").unwrap().is_tls());
        assert!(Connector::new("postgres://db/k?sslmode=require").unwrap().is_tls());
    }
}
