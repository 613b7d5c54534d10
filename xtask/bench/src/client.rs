//! A minimal HTTP/1.1 keep-alive client over one TCP connection: just enough to drive
//! Keyward and the bare server with as little client-side work per request as possible, so
//! that the load generator is never what limits the measurement. It understands
//! `Content-Length` bodies only (all that actix-web sends for these routes).

use std::io;

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

#[derive(Debug)]
pub struct Connection {
    host: String,
    stream: BufReader<TcpStream>,
    line: String,
}

/// A request rendered once and sent many times.
pub fn render(method: &str, host: &str, path: &str, bearer: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {bearer}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl Connection {
    pub async fn open(host: &str) -> io::Result<Self> {
        let stream = TcpStream::connect(host).await?;
        stream.set_nodelay(true)?;
        Ok(Self { host: host.to_owned(), stream: BufReader::new(stream), line: String::new() })
    }

    /// [`send`](Self::send), on a new connection if the server had closed this one before
    /// answering (a keep-alive connection may be closed between requests: after an
    /// overload run, say). For the sequential probes; the load runs count such a close as
    /// an error instead.
    pub async fn send_reconnecting(&mut self, request: &[u8], body: &mut Vec<u8>) -> io::Result<u16> {
        match self.send(request, body).await {
            Err(e) if closed_before_answer(&e) => {
                *self = Self::open(&self.host).await?;
                self.send(request, body).await
            }
            other => other,
        }
    }

    /// Sends a rendered request and reads the response: its status, and its body into `body`.
    pub async fn send(&mut self, request: &[u8], body: &mut Vec<u8>) -> io::Result<u16> {
        self.stream.get_mut().write_all(request).await?;
        self.line.clear();
        if self.stream.read_line(&mut self.line).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let status = self
            .line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an HTTP/1.1 status line"))?;
        let mut length = 0usize;
        loop {
            self.line.clear();
            if self.stream.read_line(&mut self.line).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let header = self.line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
            }
        }
        body.resize(length, 0);
        self.stream.read_exact(body).await?;
        Ok(status)
    }
}

/// Whether a send failed because the server had closed the connection before it answered.
fn closed_before_answer(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset)
}
