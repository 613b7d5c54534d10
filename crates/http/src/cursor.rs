//! Pagination cursors: opaque to clients (URL-safe base64 of a position's text), exact for
//! Keyward. A parser of outside input, fuzzed (`fuzz/fuzz_targets/cursors.rs`).

use base64::Engine as _;
use keyward_domain::{audit::AuditPosition, usage::UsagePosition};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

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

/// A position's text: `<RFC 3339 ts> <tail>`.
fn write_position(
    f: &mut std::fmt::Formatter<'_>,
    ts: OffsetDateTime,
    tail: impl std::fmt::Display,
) -> std::fmt::Result {
    let text = ts.format(&Rfc3339).map_err(|_| std::fmt::Error)?;
    write!(f, "{text} {tail}")
}

/// The time and the tail (if any) of a position's text.
fn read_position(text: &str) -> Result<(OffsetDateTime, Option<&str>), ()> {
    let (ts, tail) = match text.split_once(' ') {
        Some((ts, tail)) => (ts, Some(tail)),
        None => (text, None),
    };
    Ok((OffsetDateTime::parse(ts, &Rfc3339).map_err(|_| ())?, tail))
}

/// A usage record's position as a cursor value: `<RFC 3339 ts> <seq>`. A bare timestamp
/// (the cursors of earlier versions) reads as "before that instant", as it meant then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageCursor(pub UsagePosition);

impl std::fmt::Display for UsageCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_position(f, self.0.ts, self.0.seq)
    }
}

impl std::str::FromStr for UsageCursor {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ts, seq) = read_position(s)?;
        let seq = seq.map_or(Ok(i64::MIN), str::parse).map_err(|_| ())?;
        Ok(Self(UsagePosition { ts, seq }))
    }
}

/// An audit event's position as a cursor value: `<RFC 3339 ts> <event id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditCursor(pub AuditPosition);

impl std::fmt::Display for AuditCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_position(f, self.0.ts, self.0.id)
    }
}

impl std::str::FromStr for AuditCursor {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ts, id) = read_position(s)?;
        Ok(Self(AuditPosition { ts, id: id.ok_or(())?.parse().map_err(|_| ())? }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_strangers_are_refused() {
        let ts = time::macros::datetime!(2026-12-03 14:00:00.123456 UTC);
        let usage = UsageCursor(UsagePosition { ts, seq: 42 });
        assert_eq!(decode::<UsageCursor>(&encode(usage)).unwrap(), usage);
        let id = "evt_0351wCjFl5LDteAD5GyVhk".parse().unwrap();
        let audit = AuditCursor(AuditPosition { ts, id });
        assert_eq!(decode::<AuditCursor>(&encode(audit)).unwrap(), audit);
        // An earlier version's bare timestamp still pages usage records.
        let bare = decode::<UsageCursor>(&encode("2026-12-03T14:00:00Z")).unwrap();
        assert_eq!(bare.0.seq, i64::MIN);
        for stranger in ["", "bm90IGEgY3Vyc29y", &encode("2026-12-03T14:00:00Z"), &encode("2026-12-03T14:00:00Z x")] {
            assert!(decode::<AuditCursor>(stranger).is_err(), "{stranger}");
        }
    }
}
