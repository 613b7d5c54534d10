//! `KEYWARD_SMTP_URL` and `KEYWARD_MAIL_FROM`, checked at start. `smtp://` requires
//! STARTTLS (port 587 by default), `smtps://` is TLS from the first byte (port 465);
//! `smtp://…?tls=none` sends in the clear and is accepted only for a loopback host (a test
//! sink on this machine). A user and password in the URL authenticate; no error, log line
//! or `Debug` shows the password.

use std::net::IpAddr;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// `smtp://`: STARTTLS, required.
    StartTls,
    /// `smtps://`: TLS from the start.
    Implicit,
    /// `smtp://…?tls=none` to a loopback host only.
    None,
}

/// Where and how mail goes.
#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub user: Option<String>,
    pub(crate) password: Option<String>,
    /// The `From:` of every mail.
    pub from: lettre::message::Mailbox,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("from", &self.from.to_string())
            .finish()
    }
}

/// Why the settings were refused; never with the URL's password (nor the URL itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("KEYWARD_SMTP_URL is not a URL of the form smtp://[user:password@]host[:port] or smtps://…")]
    Malformed,
    #[error("KEYWARD_SMTP_URL must start with smtp:// (STARTTLS) or smtps:// (TLS)")]
    Scheme,
    #[error("KEYWARD_SMTP_URL: tls={0} is not a choice (leave it out, or tls=none for a loopback test server)")]
    TlsChoice(String),
    #[error(
        "KEYWARD_SMTP_URL: tls=none sends passwords and links in the clear; it is accepted only for a loopback host"
    )]
    CleartextNotLoopback,
    #[error("KEYWARD_MAIL_FROM must be set with KEYWARD_SMTP_URL: an address such as \"Keyward <keys@example.com>\"")]
    NoFrom,
    #[error("KEYWARD_MAIL_FROM is not an address such as \"Keyward <keys@example.com>\"")]
    From,
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl SmtpSettings {
    pub fn parse(url: &str, from: Option<&str>) -> Result<Self, SettingsError> {
        let parsed = url::Url::parse(url.trim()).map_err(|_| SettingsError::Malformed)?;
        let mut tls = match parsed.scheme() {
            "smtp" => TlsMode::StartTls,
            "smtps" => TlsMode::Implicit,
            _ => return Err(SettingsError::Scheme),
        };
        let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or(SettingsError::Malformed)?.to_owned();
        for (key, value) in parsed.query_pairs() {
            match (key.as_ref(), value.as_ref()) {
                ("tls", "none") if tls == TlsMode::StartTls => tls = TlsMode::None,
                ("tls", other) => return Err(SettingsError::TlsChoice(other.chars().take(20).collect())),
                _ => return Err(SettingsError::Malformed),
            }
        }
        if tls == TlsMode::None && !is_loopback(&host) {
            return Err(SettingsError::CleartextNotLoopback);
        }
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8().map(|c| c.into_owned());
        let user = Some(parsed.username()).filter(|u| !u.is_empty()).map(decode).transpose();
        let password = parsed.password().map(decode).transpose();
        let (Ok(user), Ok(password)) = (user, password) else { return Err(SettingsError::Malformed) };
        let port = parsed.port().unwrap_or(if tls == TlsMode::Implicit { 465 } else { 587 });
        let from = from.filter(|f| !f.trim().is_empty()).ok_or(SettingsError::NoFrom)?;
        let from = from.trim().parse().map_err(|_| SettingsError::From)?;
        Ok(Self { host, port, tls, user, password, from })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: Option<&str> = Some("Keyward <keys@example.com>");

    #[test]
    fn each_scheme_says_how_the_connection_is_protected() {
        let starttls = SmtpSettings::parse("smtp://mail.example.com", FROM).unwrap();
        assert_eq!((starttls.tls, starttls.port), (TlsMode::StartTls, 587));
        let implicit = SmtpSettings::parse("smtps://ops%40example.com:p%40ss@mail.example.com", FROM).unwrap();
        assert_eq!((implicit.tls, implicit.port), (TlsMode::Implicit, 465));
        assert_eq!((implicit.user.as_deref(), implicit.password.as_deref()), (Some("ops@example.com"), Some("p@ss")));
        let sink = SmtpSettings::parse("smtp://127.0.0.1:2525?tls=none", FROM).unwrap();
        assert_eq!((sink.tls, sink.port), (TlsMode::None, 2525));
        assert_eq!(SmtpSettings::parse("smtp://[::1]:25?tls=none", FROM).unwrap().tls, TlsMode::None);
    }

    #[test]
    fn what_is_refused_says_why_without_the_password() {
        for (url, from, refused) in [
            ("smtp://u:s3cretpw@mail.example.com?tls=none", FROM, SettingsError::CleartextNotLoopback),
            ("smtps://u:s3cretpw@127.0.0.1?tls=none", FROM, SettingsError::TlsChoice("none".into())),
            ("http://u:s3cretpw@mail.example.com", FROM, SettingsError::Scheme),
            ("smtp://u:s3cretpw@", FROM, SettingsError::Malformed),
            ("smtp://u:s3cretpw@mail.example.com?tls=maybe", FROM, SettingsError::TlsChoice("maybe".into())),
            ("smtp://u:s3cretpw@mail.example.com", None, SettingsError::NoFrom),
            ("smtp://u:s3cretpw@mail.example.com", Some("not an address"), SettingsError::From),
        ] {
            let error = SmtpSettings::parse(url, from).unwrap_err();
            assert_eq!(error, refused, "{url}");
            assert!(!error.to_string().contains("s3cretpw"), "{error}");
        }
        let settings = SmtpSettings::parse("smtp://u:s3cretpw@mail.example.com", FROM).unwrap();
        assert!(!format!("{settings:?}").contains("s3cretpw"));
    }
}
