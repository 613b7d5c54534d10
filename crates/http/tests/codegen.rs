//! `docs/openapi.json` is the OpenAPI document the code generates. `cargo xtask codegen`
//! rewrites it (`KEYWARD_CODEGEN=write`); otherwise this test fails when it drifts.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

#[test]
fn docs_openapi_json_matches_the_code() {
    let generated = keyward_http::openapi::document_json();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    if std::env::var("KEYWARD_CODEGEN").as_deref() == Ok("write") {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == generated, "docs/openapi.json is out of date: run `cargo xtask codegen`");
}
