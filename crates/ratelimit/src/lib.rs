//! Rate limiting and quotas: the `RateLimiter` and `QuotaLedger` ports' adapters, in-process
//! and Redis. Empty until issue #4; its place in the verification pipeline is marked in
//! `keyward_domain::service::KeyService::verify`.
