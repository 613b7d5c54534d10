//! The commands an operator's tooling runs: `keyward healthcheck` (the image's HEALTHCHECK,
//! with no shell or curl in the image) and `keyward config check`.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream},
    time::Duration,
};

use crate::{CliError, config::Config, settings};

/// Asks `addr` for `/healthz`; `Ok` when it answers 200. An unspecified address (what a
/// container listens on) is asked on loopback.
pub(crate) fn healthcheck(addr: SocketAddr) -> Result<(), String> {
    let addr = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port())),
        ip if ip.is_unspecified() => SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port())),
        _ => addr,
    };
    let timeout = Duration::from_secs(3);
    let failed = |e: std::io::Error| format!("{addr}: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(failed)?;
    stream.set_read_timeout(Some(timeout)).map_err(failed)?;
    stream.set_write_timeout(Some(timeout)).map_err(failed)?;
    write!(stream, "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").map_err(failed)?;
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        match stream.read(&mut head[read..]).map_err(failed)? {
            0 => break,
            n => read += n,
        }
    }
    let status = String::from_utf8_lossy(&head[..read.min(12)]).into_owned();
    if status == "HTTP/1.1 200" || status == "HTTP/1.0 200" {
        Ok(())
    } else {
        Err(format!("{addr}/healthz answered {status:?}"))
    }
}

/// Every check `serve` makes of the configuration before it connects to anything; prints
/// the settings that differ from their defaults, secrets redacted.
pub(crate) fn config_check(config: &Config) -> Result<(), CliError> {
    config.domain()?;
    config.at_rest()?;
    config.metrics_token()?;
    config.trusted_proxies()?;
    config.smtp()?;
    crate::github::keyring(config)?;
    keyward_runtime::password::BlockingPasswordHasher::new(config.passwords.params(), config.passwords.concurrency())
        .map_err(|e| CliError::Other(format!("invalid password hashing settings: {e}")))?;
    if let Some(url) = config.database_url()
        && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
    {
        return Err(CliError::Other("DATABASE_URL must be a postgres:// or postgresql:// URL".into()));
    }
    crate::limits(config)?;
    if config.shutdown_delay_seconds > config.shutdown_grace_seconds {
        return Err(CliError::Other(
            "shutdown_delay_seconds (KEYWARD_SHUTDOWN_DELAY_SECONDS) is part of shutdown_grace_seconds: it cannot be longer"
                .into(),
        ));
    }
    let defaults = settings::effective(&Config::default());
    let mut text = String::from("The configuration is valid.");
    for ((setting, value), (_, default)) in settings::effective(config).into_iter().zip(defaults) {
        if value != default {
            let value = value.unwrap_or_else(|| "(none)".into());
            text.push_str(&format!("\n  {} = {value}  ({})", setting.key, setting.env));
        }
    }
    text.push_str(match (config.database_url(), config.redis_url()) {
        (Some(_), Some(_)) => "\nStorage: PostgreSQL; limits shared through Redis.",
        (Some(_), None) => "\nStorage: PostgreSQL; limits kept by each instance.",
        (None, _) => "\nStorage: in memory (everything is lost when keyward stops).",
    });
    crate::print_once(&text);
    Ok(())
}
