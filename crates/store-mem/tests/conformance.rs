//! The storage conformance suite, run against the in-memory adapter.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use keyward_store_mem::MemStore;

keyward_domain::conformance_tests!(async { (MemStore::new(), ()) });
