//! One short page per error code, from `docs/errors/`, compiled into the binary so that
//! `documentation_url` works wherever Keyward runs.

const PAGES: &[(&str, &str)] = &[
    ("invalid_json", include_str!("../../../docs/errors/invalid_json.md")),
    ("validation_failed", include_str!("../../../docs/errors/validation_failed.md")),
    ("ambiguous_credentials", include_str!("../../../docs/errors/ambiguous_credentials.md")),
    ("unauthorized", include_str!("../../../docs/errors/unauthorized.md")),
    ("invalid_credentials", include_str!("../../../docs/errors/invalid_credentials.md")),
    ("invalid_signature", include_str!("../../../docs/errors/invalid_signature.md")),
    ("key_inactive", include_str!("../../../docs/errors/key_inactive.md")),
    ("insufficient_scope", include_str!("../../../docs/errors/insufficient_scope.md")),
    ("ip_not_allowed", include_str!("../../../docs/errors/ip_not_allowed.md")),
    ("session_required", include_str!("../../../docs/errors/session_required.md")),
    ("step_up_required", include_str!("../../../docs/errors/step_up_required.md")),
    ("plan_required", include_str!("../../../docs/errors/plan_required.md")),
    ("key_limit_reached", include_str!("../../../docs/errors/key_limit_reached.md")),
    ("password_change_required", include_str!("../../../docs/errors/password_change_required.md")),
    ("csrf_rejected", include_str!("../../../docs/errors/csrf_rejected.md")),
    ("route_not_allowed", include_str!("../../../docs/errors/route_not_allowed.md")),
    ("forbidden", include_str!("../../../docs/errors/forbidden.md")),
    ("not_found", include_str!("../../../docs/errors/not_found.md")),
    ("method_not_allowed", include_str!("../../../docs/errors/method_not_allowed.md")),
    ("not_acceptable", include_str!("../../../docs/errors/not_acceptable.md")),
    ("request_timeout", include_str!("../../../docs/errors/request_timeout.md")),
    ("idempotency_key_in_use", include_str!("../../../docs/errors/idempotency_key_in_use.md")),
    ("keyspace_not_empty", include_str!("../../../docs/errors/keyspace_not_empty.md")),
    ("name_taken", include_str!("../../../docs/errors/name_taken.md")),
    ("already_member", include_str!("../../../docs/errors/already_member.md")),
    ("payload_too_large", include_str!("../../../docs/errors/payload_too_large.md")),
    ("unsupported_media_type", include_str!("../../../docs/errors/unsupported_media_type.md")),
    ("idempotency_key_reused", include_str!("../../../docs/errors/idempotency_key_reused.md")),
    ("rate_limited", include_str!("../../../docs/errors/rate_limited.md")),
    ("quota_exhausted", include_str!("../../../docs/errors/quota_exhausted.md")),
    ("internal", include_str!("../../../docs/errors/internal.md")),
    ("unavailable", include_str!("../../../docs/errors/unavailable.md")),
    ("shutting_down", include_str!("../../../docs/errors/shutting_down.md")),
];

/// The Markdown page of `code`, if it is one of ours.
pub fn error_page(code: &str) -> Option<&'static str> {
    PAGES.iter().find(|(c, _)| *c == code).map(|(_, page)| *page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_has_a_page_and_every_page_a_code() {
        for (code, _, _) in crate::error::ERROR_CODES {
            assert!(error_page(code).is_some(), "docs/errors/{code}.md is missing");
        }
        for (code, _) in PAGES {
            assert!(crate::error::ERROR_CODES.iter().any(|(c, _, _)| c == code), "{code} has a page but is not a code");
        }
    }
}
