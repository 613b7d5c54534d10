//! The storage conformance suite, run against real PostgreSQL: each test gets its own
//! database cloned from the migrated template, dropped when the test ends.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use keyward_store_pg::testing::TestDatabase;

keyward_domain::conformance_tests!(async {
    let db = TestDatabase::new().await;
    (db.store(), db)
});
