//! Charts drawn as SVG on the server: no script, nothing fetched, and the numbers are in
//! the page as text too (each bar's label and value), for a screen reader and for a test.

use maud::{Markup, html};

use crate::format::count;

/// Height of one bar's row, in SVG units.
const ROW: u32 = 28;
/// Where the bars start (the labels are left of it) and how long the longest one is.
const BAR_X: u32 = 170;
const BAR_MAX: u32 = 330;

/// A horizontal bar chart of labelled counts, largest first as given.
pub fn bars(title: &str, rows: &[(String, u64)]) -> Markup {
    let max = rows.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let height = ROW * u32::try_from(rows.len()).unwrap_or(u32::MAX).max(1);
    html! {
        figure.chart {
            figcaption { (title) }
            @if rows.is_empty() {
                p.muted { "Nothing yet." }
            } @else {
                svg viewBox={ "0 0 600 " (height) } role="img" aria-label=(title) preserveAspectRatio="xMinYMin meet" {
                    @for (i, (label, n)) in rows.iter().enumerate() {
                        @let y = ROW * u32::try_from(i).unwrap_or(0);
                        @let width = scaled(*n, max, BAR_MAX);
                        g.row {
                            title { (label) ": " (count(*n)) }
                            text.label x=(BAR_X - 10) y=(y + 18) text-anchor="end" { (label) }
                            rect.bar x=(BAR_X) y=(y + 5) width=(width) height=(ROW - 10) rx="3" {}
                            text.value x=(BAR_X + width + 8) y=(y + 18) { (count(*n)) }
                        }
                    }
                }
            }
        }
    }
}

/// Height of the columns' area, and the width of one column's slot, in SVG units.
const COLUMNS_HEIGHT: u32 = 120;
const SLOT: u32 = 20;

/// A column chart of one count per day, oldest first, `days[i]` being `first + i` days;
/// the first and last dates are written under it.
pub fn days(title: &str, first: time::Date, days: &[u64]) -> Markup {
    let max = days.iter().copied().max().unwrap_or(0).max(1);
    let width = SLOT * u32::try_from(days.len()).unwrap_or(0).max(1);
    let last = first + time::Duration::days(i64::try_from(days.len()).unwrap_or(1) - 1);
    html! {
        figure.chart.days {
            figcaption { (title) }
            svg viewBox={ "0 0 " (width) " " (COLUMNS_HEIGHT + 22) } role="img" aria-label=(title) {
                line.axis x1="0" y1=(COLUMNS_HEIGHT) x2=(width) y2=(COLUMNS_HEIGHT) {}
                @for (i, n) in days.iter().enumerate() {
                    @let x = SLOT * u32::try_from(i).unwrap_or(0);
                    @let height = scaled(*n, max, COLUMNS_HEIGHT - 10);
                    @let day = first + time::Duration::days(i64::try_from(i).unwrap_or(0));
                    g.row data-day=(day) data-count=(n) {
                        title { (day) ": " (count(*n)) }
                        rect.bar x=(x + 3) y=(COLUMNS_HEIGHT - height) width=(SLOT - 6) height=(height) rx="2" {}
                    }
                }
                text.label x="0" y=(COLUMNS_HEIGHT + 18) { (first) }
                text.label x=(width) y=(COLUMNS_HEIGHT + 18) text-anchor="end" { (last) }
            }
        }
    }
}

/// `n` of `max` as a length up to `full`, at least 1 for a non-zero `n` so it shows.
fn scaled(n: u64, max: u64, full: u32) -> u32 {
    let length = u32::try_from(u128::from(n) * u128::from(full) / u128::from(max)).unwrap_or(full);
    if n > 0 { length.max(1) } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_bar_is_full_length_and_a_small_one_still_shows() {
        assert_eq!(scaled(50, 50, 330), 330);
        assert_eq!(scaled(25, 50, 330), 165);
        assert_eq!(scaled(1, 1_000_000, 330), 1);
        assert_eq!(scaled(0, 50, 330), 0);
        assert_eq!(scaled(u64::MAX, u64::MAX, 330), 330);
    }

    #[test]
    fn each_day_is_a_column_with_its_date_and_count() {
        let first = time::macros::date!(2026 - 11 - 04);
        let svg = days("Last 30 days", first, &[0, 5, 10]).into_string();
        assert!(svg.contains(r#"data-day="2026-11-05" data-count="5""#), "{svg}");
        assert!(svg.contains(">2026-11-04<") && svg.contains(">2026-11-06<"), "first and last dates: {svg}");
        assert_eq!(svg.matches("<rect").count(), 3);
    }

    #[test]
    fn labels_are_escaped_and_values_are_in_the_text() {
        let svg = bars("By outcome", &[("<VALID>".into(), 1200), ("REVOKED".into(), 3)]).into_string();
        assert!(svg.contains("&lt;VALID&gt;"), "{svg}");
        assert!(svg.contains(">1,200<"), "{svg}");
        assert!(!svg.contains("<VALID>"), "{svg}");
    }
}
