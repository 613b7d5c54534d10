//! Pagination cursors: opaque to clients (URL-safe base64 of a position's text), exact for
//! Keyward. A parser of outside input, fuzzed (`fuzz/fuzz_targets/cursors.rs`).

use base64::Engine as _;

use crate::error::ApiError;

/// A position as the cursor a page hands out.
pub fn encode(value: impl std::fmt::Display) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

/// The position a cursor of [`encode`] names; 400 `validation_failed` for anything else.
pub fn decode<T: std::str::FromStr>(cursor: &str) -> Result<T, ApiError> {
    let invalid = || ApiError::field("cursor", "not a cursor this API returned");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    std::str::from_utf8(&bytes).ok().and_then(|s| s.parse().ok()).ok_or_else(invalid)
}

/// A usage record's position as a cursor value: `<RFC 3339 ts> <seq>`. A bare timestamp
/// (the cursors of earlier versions) reads as "before that instant", as it meant then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageCursor(pub keyward_domain::usage::UsagePosition);

impl std::fmt::Display for UsageCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.0.ts.format(&time::format_description::well_known::Rfc3339).map_err(|_| std::fmt::Error)?;
        write!(f, "{text} {}", self.0.seq)
    }
}

impl std::str::FromStr for UsageCursor {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ts, seq) = match s.split_once(' ') {
            Some((ts, seq)) => (ts, seq.parse().map_err(|_| ())?),
            None => (s, i64::MIN),
        };
        let ts = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).map_err(|_| ())?;
        Ok(Self(keyward_domain::usage::UsagePosition { ts, seq }))
    }
}

/// An audit event's position as a cursor value: `<RFC 3339 ts> <event id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditCursor(pub keyward_domain::audit::AuditPosition);

impl std::fmt::Display for AuditCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.0.ts.format(&time::format_description::well_known::Rfc3339).map_err(|_| std::fmt::Error)?;
        write!(f, "{text} {}", self.0.id)
    }
}

impl std::str::FromStr for AuditCursor {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ts, id) = s.split_once(' ').ok_or(())?;
        let ts = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).map_err(|_| ())?;
        Ok(Self(keyward_domain::audit::AuditPosition { ts, id: id.parse().map_err(|_| ())? }))
    }
}
