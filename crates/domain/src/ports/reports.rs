//! Signed leak reports already processed (issue #29): GitHub's secret-scanning reports
//! carry no timestamp, so a captured one could be replayed — after the owner re-enabled a
//! key, to disable it again. The digest of each processed report's body is kept, and a
//! report seen before changes nothing.

use std::future::Future;

use time::OffsetDateTime;

use crate::ports::StorageError;

pub trait ReportStore: Send + Sync {
    /// Whether a report whose body has `digest` was processed.
    fn report_processed(&self, digest: &[u8; 32]) -> impl Future<Output = Result<bool, StorageError>> + Send;
    /// Records that it was (again: nothing changes).
    fn remember_report(
        &self,
        digest: &[u8; 32],
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;
}
