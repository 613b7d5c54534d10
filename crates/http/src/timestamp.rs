//! Timestamps the API accepts: RFC 3339, normalised to UTC, and within what both stores
//! hold. An offset can push a valid-looking instant (`9999-12-31T23:59:59-23:59`) past the
//! year 9999, where converting it to UTC would panic; such a value is a validation error
//! naming its field instead.

use serde::{Deserialize, Deserializer};
use time::{OffsetDateTime, UtcOffset, format_description::well_known::Rfc3339, macros::datetime};

/// The earliest and latest instants accepted: what `time` represents by default and
/// PostgreSQL's `timestamptz` holds, with no offset arithmetic left that could overflow.
pub const EARLIEST: OffsetDateTime = datetime!(0001-01-01 00:00 UTC);
pub const LATEST: OffsetDateTime = datetime!(9999-12-31 23:59:59.999_999 UTC);

/// Parses and range-checks one timestamp; the message names the accepted range.
pub fn parse(text: &str) -> Result<OffsetDateTime, String> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| "must be an RFC 3339 timestamp".to_owned())?;
    parsed
        .checked_to_offset(UtcOffset::UTC)
        .filter(|utc| (EARLIEST..=LATEST).contains(utc))
        .ok_or_else(|| "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z".to_owned())
}

/// `Option<OffsetDateTime>` for `#[serde(default, deserialize_with = "…")]`.
pub fn option<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<OffsetDateTime>, D::Error> {
    Option::<String>::deserialize(deserializer)?.map(|text| parse(&text).map_err(serde::de::Error::custom)).transpose()
}

/// `Option<Option<OffsetDateTime>>` for PATCH: absent → `None`, `null` → `Some(None)`.
pub fn double_option<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<OffsetDateTime>>, D::Error> {
    option(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_that_leave_the_range_are_refused_not_panicked_on() {
        assert!(parse("9999-12-31T23:59:59-23:59").is_err());
        assert!(parse("0001-01-01T00:00:00+23:59").is_err());
        assert!(parse("yesterday").is_err());
        assert_eq!(parse("9999-12-31T23:59:59Z"), Ok(datetime!(9999-12-31 23:59:59 UTC)));
        assert_eq!(parse("2026-03-01T12:00:00+01:00"), Ok(datetime!(2026-03-01 11:00 UTC)));
        assert_eq!(parse("2026-03-01T12:00:00+01:00").map(OffsetDateTime::offset), Ok(UtcOffset::UTC));
    }
}
