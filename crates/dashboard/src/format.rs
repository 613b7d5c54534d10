//! How values read on a page: times in UTC to the minute, counts with thousands separators.

use maud::{Markup, html};
use time::{OffsetDateTime, macros::format_description};

/// A moment as `2026-12-03 17:40 UTC`, machine-readable in `<time datetime>`.
pub fn moment(at: OffsetDateTime) -> Markup {
    let at = at.to_offset(time::UtcOffset::UTC);
    let shown = at.format(format_description!("[year]-[month]-[day] [hour]:[minute] UTC")).unwrap_or_default();
    let exact = at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    html! { time datetime=(exact) { (shown) } }
}

/// A moment that may not have happened: `never` (or what `none` says) when it has not.
pub fn maybe_moment(at: Option<OffsetDateTime>, none: &str) -> Markup {
    match at {
        Some(at) => moment(at),
        None => html! { span.muted { (none) } },
    }
}

/// A key's metadata as its JSON, for reading and for editing.
pub fn json(metadata: &keyward_domain::key_service::Metadata) -> String {
    serde_json::to_string_pretty(metadata).unwrap_or_default()
}

/// `1234567` as `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
    }

    #[test]
    fn moments_read_in_utc() {
        let at = time::macros::datetime!(2026-12-03 18:40 +01:00);
        let shown = moment(at).into_string();
        assert!(shown.contains(">2026-12-03 17:40 UTC<"), "{shown}");
        assert!(shown.contains("datetime=\"2026-12-03T17:40:00Z\""), "{shown}");
    }
}
