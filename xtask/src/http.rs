//! Just enough HTTP/1.1 for xtask to sign in to a server it started on this machine: one
//! JSON request per connection, no TLS, no redirects, the answer read to its end.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use crate::Result;

/// What a server answered: its status, the value of the cookie asked about if it set one,
/// and its body.
pub struct Answer {
    pub status: u16,
    pub cookie: Option<String>,
    pub body: String,
}

/// `POST`s `body` as JSON to `http://{addr}{path}`, sending `cookie` (`name=value`) if
/// given, and returns the answer with the value of the cookie named `cookie_name`.
pub fn post_json(addr: &str, path: &str, cookie: Option<&str>, cookie_name: &str, body: &str) -> Result<Answer> {
    let cookie = cookie.map(|c| format!("Cookie: {c}\r\n")).unwrap_or_default();
    post(addr, path, &cookie, cookie_name, body)
}

/// `POST`s `body` as JSON with `key` as the bearer credential.
pub fn post_bearer(addr: &str, path: &str, key: &str, body: &str) -> Result<Answer> {
    send_bearer("POST", addr, path, key, body)
}

/// Sends `body` as JSON with `method` and `key` as the bearer credential.
pub fn send_bearer(method: &str, addr: &str, path: &str, key: &str, body: &str) -> Result<Answer> {
    send(method, addr, path, &format!("Authorization: Bearer {key}\r\n"), "", body)
}

fn post(addr: &str, path: &str, header: &str, cookie_name: &str, body: &str) -> Result<Answer> {
    send("POST", addr, path, header, cookie_name, body)
}

fn send(method: &str, addr: &str, path: &str, header: &str, cookie_name: &str, body: &str) -> Result<Answer> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{header}\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).map_err(|e| format!("{method} {path}: {e}"))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| format!("{method} {path}: {e}"))?;
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").ok_or_else(|| format!("{method} {path}: no HTTP answer"))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("{method} {path}: no status line"))?;
    let cookie = lines
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("set-cookie"))
        .find_map(|(_, value)| value.trim().strip_prefix(cookie_name)?.strip_prefix('='))
        .map(|rest| rest.split(';').next().unwrap_or_default().to_owned());
    Ok(Answer { status, cookie, body: body.to_owned() })
}
