//! The headers every response may carry, formatted without a `String` per value: the
//! rate-limit headers of the limit a request met (IETF `RateLimit` / `RateLimit-Policy`
//! and the `X-RateLimit-*` trio) and short values like the request id.

use actix_web::{
    HttpMessage, HttpRequest,
    http::header::{HeaderMap, HeaderName, HeaderValue},
    web::Bytes,
};
use keyward_domain::ratelimit::Decision;

/// The most constraining limit a request met, kept in its extensions for the headers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateLimitSeen {
    pub(crate) tier: &'static str,
    pub(crate) decision: Decision,
    /// Unix seconds at which that limit is fully available again.
    pub(crate) reset_at: i64,
}

/// Adds the rate-limit headers of the limit the request met, if any.
///
/// Every verification answers with these five, so their values are written (digits by
/// `itoa`, not `core::fmt`) into one buffer and handed out as slices of it: two allocations
/// for the lot instead of one per header.
pub(crate) fn add_headers(req: &HttpRequest, headers: &mut HeaderMap) {
    use Part::{Number, Text};
    let Some(seen) = req.extensions().get::<RateLimitSeen>().copied() else { return };
    let d = seen.decision;
    let values: [(&'static str, &[Part]); 5] = [
        ("x-ratelimit-limit", &[Number(d.limit)]),
        ("x-ratelimit-remaining", &[Number(d.remaining)]),
        // Unix seconds: never before 1970, so never negative.
        ("x-ratelimit-reset", &[Number(u64::try_from(seen.reset_at).unwrap_or(0))]),
        (
            "ratelimit-policy",
            &[Text("\""), Text(seen.tier), Text("\";q="), Number(d.limit), Text(";w="), Number(d.window_seconds)],
        ),
        (
            "ratelimit",
            &[Text("\""), Text(seen.tier), Text("\";r="), Number(d.remaining), Text(";t="), Number(d.reset_seconds)],
        ),
    ];
    let mut text = Vec::with_capacity(128);
    let mut ends = [0; 5];
    let mut digits = itoa::Buffer::new();
    for ((_, parts), end) in values.iter().zip(&mut ends) {
        for part in *parts {
            text.extend_from_slice(match part {
                Text(s) => s.as_bytes(),
                Number(n) => digits.format(*n).as_bytes(),
            });
        }
        *end = text.len();
    }
    let text = Bytes::from(text);
    let mut start = 0;
    for ((name, _), end) in values.iter().zip(ends) {
        // Tier names are static identifiers and the rest digits: always a valid value.
        if let Ok(value) = HeaderValue::from_maybe_shared(text.slice(start..end)) {
            headers.insert(HeaderName::from_static(name), value);
        }
        start = end;
    }
}

/// A piece of a rate-limit header's value.
enum Part {
    Text(&'static str),
    Number(u64),
}

/// Short text formatted on the stack, for the values every response carries: formatting
/// into a `String` first cost a second allocation per header on the hot path.
pub(crate) struct StackText {
    bytes: [u8; 96],
    len: usize,
}

impl StackText {
    /// `None` when the text would not fit.
    pub(crate) fn format(args: std::fmt::Arguments<'_>) -> Option<Self> {
        let mut text = Self { bytes: [0; 96], len: 0 };
        std::fmt::write(&mut text, args).ok()?;
        Some(text)
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// A header value formatted without an intermediate `String`.
pub(crate) fn header_value(args: std::fmt::Arguments<'_>) -> Option<HeaderValue> {
    HeaderValue::from_bytes(StackText::format(args)?.as_bytes()).ok()
}
