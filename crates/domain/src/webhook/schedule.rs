//! When a failed delivery is tried again: exponential steps from seconds to a day, about
//! three days in all, each moved by up to ±20 % of jitter so the retries of many messages
//! to one receiver that was down do not all arrive at the same moment.

use time::Duration;

use crate::random::RandomSource;

/// The wait before each retry (the first try is immediate): 5 s, 1 min, 10 min, 1 h, 3 h,
/// 6 h, 12 h, 24 h, 24 h — 70 h 11 min without jitter.
pub const RETRY_DELAYS: [Duration; 9] = [
    Duration::seconds(5),
    Duration::minutes(1),
    Duration::minutes(10),
    Duration::hours(1),
    Duration::hours(3),
    Duration::hours(6),
    Duration::hours(12),
    Duration::hours(24),
    Duration::hours(24),
];

/// The wait after the `attempts`-th failed try, or `None` once every retry has been made.
pub fn retry_delay(attempts: u32, rng: &dyn RandomSource) -> Option<Duration> {
    let index = usize::try_from(attempts.checked_sub(1)?).ok()?;
    let base = *RETRY_DELAYS.get(index)?;
    let mut byte = [0u8; 2];
    rng.fill(&mut byte);
    // A factor in [0.8, 1.2).
    let factor = 0.8 + 0.4 * f64::from(u16::from_le_bytes(byte)) / 65_536.0;
    Some(base * factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SeededRandom;

    #[test]
    fn retries_span_about_three_days_and_then_stop() {
        let rng = SeededRandom::new(7);
        let total: Duration = RETRY_DELAYS.iter().sum();
        assert!(total > Duration::days(2) + Duration::hours(12) && total < Duration::days(3) + Duration::hours(12));
        for attempts in 1..=9 {
            let delay = retry_delay(attempts, &rng).unwrap();
            let base = RETRY_DELAYS[attempts as usize - 1];
            assert!(delay >= base * 0.8 && delay < base * 1.2, "{attempts}: {delay}");
        }
        assert_eq!(retry_delay(10, &rng), None);
        assert_eq!(retry_delay(0, &rng), None);
    }

    #[test]
    fn jitter_spreads_retries() {
        let rng = SeededRandom::new(3);
        let delays: std::collections::BTreeSet<_> = (0..20).map(|_| retry_delay(4, &rng).unwrap()).collect();
        assert!(delays.len() > 15, "{delays:?}");
    }
}
