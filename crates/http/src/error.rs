//! The error envelope of SPEC §5, and the one place where domain errors become HTTP status
//! codes and stable error codes.
//!
//! Handlers return [`ApiError`]; the [`envelope`] middleware renders every non-2xx response,
//! whoever produced it (a handler, an extractor, actix's router), as
//! `{"error", "message", "request_id", "documentation_url", …}` with `X-Request-Id`.

use actix_web::{
    HttpMessage, HttpResponse, ResponseError,
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{StatusCode, header},
    middleware::Next,
    web,
};
use futures_util::FutureExt as _;
use keyward_domain::{
    FieldError, OsRandom, RequestId,
    error::{AuthError, ManageError, PeopleError},
    ports::StorageError,
};
use serde::Serialize;

/// Every error code the API can answer with, its status and a one-line description.
/// `docs/errors/<code>.md` holds one page per entry (checked by a test).
pub const ERROR_CODES: &[(&str, u16, &str)] = &[
    ("invalid_json", 400, "The body is not well-formed JSON."),
    ("validation_failed", 400, "The body or query parsed, but a field is missing, unknown or out of bounds."),
    ("ambiguous_credentials", 400, "The request carries two different credentials."),
    ("unauthorized", 401, "The credential is missing, malformed, unknown, revoked or expired."),
    ("invalid_credentials", 401, "Wrong email or password."),
    ("key_inactive", 403, "The key is disabled."),
    ("insufficient_scope", 403, "The key lacks the scope this operation needs."),
    ("ip_not_allowed", 403, "The key's IP allowlist does not include the client's address."),
    ("session_required", 403, "This route accepts a logged-in session only, not an API key."),
    ("step_up_required", 403, "Re-enter your password first (POST /v1/account/verify-password)."),
    ("plan_required", 403, "The account's plan does not include this feature."),
    ("key_limit_reached", 403, "The account's plan allows no more active keys."),
    ("password_change_required", 403, "Change the password someone else chose first (POST /v1/account/password)."),
    ("csrf_rejected", 403, "A cookie-authenticated request came from another origin or was not JSON."),
    ("forbidden", 403, "The operation is not allowed."),
    ("not_found", 404, "No such route, or no such object in your account."),
    ("method_not_allowed", 405, "The route exists but does not accept this method."),
    ("request_timeout", 408, "The body did not arrive in time; send it at once."),
    ("idempotency_key_in_use", 409, "A request with this Idempotency-Key is still running."),
    ("keyspace_not_empty", 409, "The keyspace still holds active keys."),
    ("payload_too_large", 413, "The body is larger than the route accepts."),
    ("unsupported_media_type", 415, "The body is not application/json."),
    ("idempotency_key_reused", 422, "This Idempotency-Key was used for a different request."),
    ("rate_limited", 429, "Too many requests; retry after the time given."),
    ("quota_exhausted", 429, "The quota is spent."),
    ("internal", 500, "Something failed inside Keyward; the request id identifies it in the logs."),
    ("unavailable", 503, "Storage cannot be reached right now; retry later."),
];

/// An error answer: a status, a stable code, a message for people, and the extra fields
/// some codes carry.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<FieldError>,
    /// For 429: which limit (`ip`, `key`, `account`, `endpoint`, `login`) and for how long.
    pub retry: Option<(&'static str, u64)>,
    /// Not an error: the stored response of an idempotency key, sent again as it was.
    pub replay: Option<Box<(StatusCode, web::Bytes)>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: Vec::new(), retry: None, replay: None }
    }

    pub fn validation(details: Vec<FieldError>) -> Self {
        let message = match details.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            _ => format!("{} fields are invalid", details.len()),
        };
        Self { details, ..Self::new(StatusCode::BAD_REQUEST, "validation_failed", message) }
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError { field: field.to_owned(), message: message.into() }])
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "a valid API key is required (Authorization: Bearer <key>)")
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such object")
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "an internal error occurred")
    }

    /// The envelope for a response that carries no `ApiError` (actix's own 404/405, a
    /// panic caught by actix, an extractor we did not configure).
    fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::new(status, "not_found", "no such route"),
            StatusCode::METHOD_NOT_ALLOWED => {
                Self::new(status, "method_not_allowed", "this route does not accept this method")
            }
            StatusCode::PAYLOAD_TOO_LARGE => Self::new(status, "payload_too_large", "the body is too large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                Self::new(status, "unsupported_media_type", "the body must be application/json")
            }
            StatusCode::SERVICE_UNAVAILABLE => Self::new(status, "unavailable", "storage is unavailable"),
            s if s.is_client_error() => Self::new(status, "validation_failed", "the request is not valid"),
            _ => Self::internal(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.replay.as_ref().map_or(self.status, |replay| replay.0)
    }

    fn error_response(&self) -> HttpResponse {
        // The body is rendered by the `envelope` middleware, which knows the request id.
        let mut response = HttpResponse::build(self.status_code());
        if let Some((_, seconds)) = self.retry {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response.finish()
    }
}

fn storage(error: &StorageError) -> ApiError {
    // The cause chain goes to the log, never to the client.
    match error {
        StorageError::Unavailable(cause) => {
            tracing::warn!(error = %error, cause = %cause, "storage unavailable");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "storage is unavailable; retry later")
        }
        StorageError::Internal(cause) => {
            tracing::error!(error = %error, cause = %cause, "storage failure");
            ApiError::internal()
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Unauthorized => Self::unauthorized(),
            AuthError::KeyInactive => Self::new(StatusCode::FORBIDDEN, "key_inactive", "the key is disabled"),
            AuthError::IpNotAllowed => {
                Self::new(StatusCode::FORBIDDEN, "ip_not_allowed", "the key may not be used from this address")
            }
            AuthError::ServiceKey => {
                Self::new(StatusCode::FORBIDDEN, "forbidden", "service keys cannot call the management API")
            }
            AuthError::Storage(e) => storage(&e),
        }
    }
}

impl From<PeopleError> for ApiError {
    fn from(error: PeopleError) -> Self {
        match error {
            PeopleError::InvalidCredentials => {
                Self::new(StatusCode::UNAUTHORIZED, "invalid_credentials", "wrong email or password")
            }
            PeopleError::Throttled { retry_after_seconds } => Self {
                retry: Some(("login", retry_after_seconds)),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many login attempts; try again later")
            },
            PeopleError::SessionRequired => Self::new(
                StatusCode::FORBIDDEN,
                "session_required",
                "this route needs a login session (cookie), not an API key",
            ),
            PeopleError::StepUpRequired => Self::new(
                StatusCode::FORBIDDEN,
                "step_up_required",
                "re-enter your password first: POST /v1/account/verify-password",
            ),
            PeopleError::PasswordChangeRequired => Self::new(
                StatusCode::FORBIDDEN,
                "password_change_required",
                "this password was chosen by someone else: change it first (POST /v1/account/password)",
            ),
            PeopleError::PlanRequired => {
                Self::new(StatusCode::FORBIDDEN, "plan_required", "the account's plan does not include account keys")
            }
            PeopleError::Manage(e) => e.into(),
            PeopleError::Hashing(e) => {
                tracing::error!(error = %e, "password hashing failed");
                Self::internal()
            }
        }
    }
}

impl From<ManageError> for ApiError {
    fn from(error: ManageError) -> Self {
        match error {
            ManageError::InsufficientScope(scope) => Self::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("this operation needs the {scope} scope"),
            ),
            ManageError::NotFound => Self::not_found(),
            ManageError::Invalid(errors) => Self::validation(errors.errors().to_vec()),
            ManageError::KeyLimitReached => {
                Self::new(StatusCode::FORBIDDEN, "key_limit_reached", "the account's plan allows no more active keys")
            }
            ManageError::KeyspaceNotEmpty => Self::new(
                StatusCode::CONFLICT,
                "keyspace_not_empty",
                "revoke the keyspace's active keys before deleting it",
            ),
            ManageError::Forbidden(why) => Self::new(StatusCode::FORBIDDEN, "forbidden", why),
            ManageError::LegacyGuessing { retry_after_seconds } => Self {
                retry: Some(("account", retry_after_seconds)),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many lookups of keys that are not in Keyward's format matched nothing; retry later",
                )
            },
            ManageError::Storage(e) => storage(&e),
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: &'a str,
    message: &'a str,
    request_id: RequestId,
    documentation_url: String,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    details: &'a [FieldError],
    #[serde(skip_serializing_if = "Option::is_none")]
    tier: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_seconds: Option<u64>,
}

/// Where the documentation pages of error codes live (`{public_url}/docs/errors/{code}`).
#[derive(Debug, Clone)]
pub struct PublicUrl(pub String);

/// The random part of request ids: a per-thread generator seeded once from the OS. Request
/// ids must be unique, not secret, and a `getrandom` call per request showed in the
/// verification profile (docs/performance.md).
#[derive(Debug)]
struct RequestIdRandom;

impl keyward_domain::RandomSource for RequestIdRandom {
    fn fill(&self, buf: &mut [u8]) {
        thread_local! {
            static IDS: keyward_domain::SeededRandom = keyward_domain::SeededRandom::new({
                let mut seed = [0u8; 8];
                keyward_domain::RandomSource::fill(&OsRandom, &mut seed);
                u64::from_le_bytes(seed)
            });
        }
        IDS.with(|ids| keyward_domain::RandomSource::fill(ids, buf));
    }
}

/// Assigns the request id, sets `X-Request-Id`, renders the envelope of every error, and
/// writes the access log line.
pub async fn envelope(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let request_id = RequestId::generate(time::OffsetDateTime::now_utc(), &RequestIdRandom);
    req.extensions_mut().insert(request_id);
    let started = std::time::Instant::now();
    // For the access log: the path only (query strings are the client's business, bodies
    // may hold keys). Clones of shared bytes, not copies.
    let (method, uri) = (req.method().clone(), req.uri().clone());
    // An Arc clone: the URL is only read when rendering an error.
    let public_url = req.app_data::<web::Data<PublicUrl>>().cloned();
    // A panic in a handler must not drop the connection: it becomes a 500 envelope. The
    // request was moved into the handler, so the response is attached to a stand-in.
    let response = match std::panic::AssertUnwindSafe(next.call(req)).catch_unwind().await {
        Ok(response) => response?.map_into_left_body(),
        Err(_) => {
            tracing::error!(%request_id, "a handler panicked");
            let stand_in = actix_web::test::TestRequest::default().to_http_request();
            ServiceResponse::new(stand_in, HttpResponse::InternalServerError().finish()).map_into_right_body()
        }
    };
    let replay = response.response().error().and_then(|e| e.as_error::<ApiError>()).and_then(|e| e.replay.clone());
    let mut response = if let Some((status, body)) = replay.map(|r| *r) {
        let mut replayed = HttpResponse::build(status);
        replayed.content_type("application/json").insert_header(("idempotent-replayed", "true"));
        response.into_response(replayed.body(body)).map_into_right_body()
    } else if response.status().is_client_error() || response.status().is_server_error() {
        let api_error =
            response.response().error().and_then(|e| e.as_error::<ApiError>().cloned()).unwrap_or_else(|| {
                if response.status().is_server_error()
                    && let Some(e) = response.response().error()
                {
                    tracing::error!(error = %e, "unhandled error");
                }
                ApiError::for_status(response.status())
            });
        let body = Envelope {
            error: api_error.code,
            message: &api_error.message,
            request_id,
            documentation_url: format!(
                "{}/docs/errors/{}",
                public_url.as_ref().map_or("", |u| u.0.as_str()),
                api_error.code
            ),
            details: &api_error.details,
            tier: api_error.retry.map(|(tier, _)| tier),
            retry_after_seconds: api_error.retry.map(|(_, seconds)| seconds),
        };
        let mut rendered = HttpResponse::build(api_error.status).json(body);
        for (name, value) in response.headers() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                rendered.headers_mut().append(name.clone(), value.clone());
            }
        }
        response.into_response(rendered).map_into_right_body()
    } else {
        response
    };
    if let Some(value) = crate::limits::header_value(format_args!("{request_id}")) {
        response.headers_mut().insert(header::HeaderName::from_static("x-request-id"), value);
    }
    let (request, http_response) = response.into_parts();
    let mut http_response = http_response;
    crate::limits::add_headers(&request, http_response.headers_mut());
    let response = ServiceResponse::new(request, http_response);
    tracing::info!(
        target: "keyward::access",
        %request_id,
        %method,
        path = uri.path(),
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    Ok(response)
}
