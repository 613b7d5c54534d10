//! The storage conformance suite, run against the in-memory adapter.

use keyward_store_mem::MemStore;

keyward_domain::conformance_tests!(async { (MemStore::new(), ()) });
