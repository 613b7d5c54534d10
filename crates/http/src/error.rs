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
use tracing::Instrument as _;

use crate::media;

/// Every error code the API can answer with, its status and a one-line description.
/// `docs/errors/<code>.md` holds one page per entry (checked by a test).
/// Declares [`ErrorCode`] and [`ERROR_CODES`] from one table: each code's wire name, its
/// status and a one-line description, written once.
macro_rules! error_codes {
    ($($variant:ident => ($code:literal, $number:literal, $status:ident, $description:literal),)+) => {
        /// A stable error code of the envelope. Its HTTP status is decided here and nowhere
        /// else: an [`ApiError`] takes its status from its code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)+
        }

        impl ErrorCode {
            pub const ALL: &[Self] = &[$(Self::$variant,)+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)+
                }
            }

            pub const fn status(self) -> StatusCode {
                match self {
                    $(Self::$variant => StatusCode::$status,)+
                }
            }

            pub const fn description(self) -> &'static str {
                match self {
                    $(Self::$variant => $description,)+
                }
            }

            pub fn parse(code: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|c| c.as_str() == code)
            }
        }

        /// Every code as `(code, status, description)`, for the documentation pages.
        pub const ERROR_CODES: &[(&str, u16, &str)] = &[$(($code, $number, $description),)+];
    };
}

error_codes! {
    InvalidJson => ("invalid_json", 400, BAD_REQUEST, "The body is not well-formed JSON."),
    ValidationFailed => ("validation_failed", 400, BAD_REQUEST, "The body or query parsed, but a field is missing, unknown or out of bounds."),
    AmbiguousCredentials => ("ambiguous_credentials", 400, BAD_REQUEST, "The request carries two different credentials."),
    Unauthorized => ("unauthorized", 401, UNAUTHORIZED, "The credential is missing, malformed, unknown, revoked or expired."),
    InvalidCredentials => ("invalid_credentials", 401, UNAUTHORIZED, "Wrong email or password."),
    InvalidSignature => ("invalid_signature", 401, UNAUTHORIZED, "A signed report's signature is missing, names an unknown public key, or does not match the body."),
    KeyInactive => ("key_inactive", 403, FORBIDDEN, "The key is disabled."),
    InsufficientScope => ("insufficient_scope", 403, FORBIDDEN, "The key lacks the scope this operation needs."),
    IpNotAllowed => ("ip_not_allowed", 403, FORBIDDEN, "The key's IP allowlist does not include the client's address."),
    SessionRequired => ("session_required", 403, FORBIDDEN, "This route accepts a logged-in session only, not an API key."),
    StepUpRequired => ("step_up_required", 403, FORBIDDEN, "Re-enter your password first (POST /v1/account/verify-password)."),
    PlanRequired => ("plan_required", 403, FORBIDDEN, "The account's plan does not include this feature."),
    KeyLimitReached => ("key_limit_reached", 403, FORBIDDEN, "The account's plan allows no more active keys."),
    PasswordChangeRequired => ("password_change_required", 403, FORBIDDEN, "Change the password someone else chose first (POST /v1/account/password)."),
    CsrfRejected => ("csrf_rejected", 403, FORBIDDEN, "A cookie-authenticated request came from another origin or was not JSON."),
    RouteNotAllowed => ("route_not_allowed", 403, FORBIDDEN, "A gateway asked about a route the keyspace's route rules open to no key."),
    Forbidden => ("forbidden", 403, FORBIDDEN, "The operation is not allowed."),
    NotFound => ("not_found", 404, NOT_FOUND, "No such route, or no such object in your account."),
    MethodNotAllowed => ("method_not_allowed", 405, METHOD_NOT_ALLOWED, "The route exists but does not accept this method."),
    NotAcceptable => ("not_acceptable", 406, NOT_ACCEPTABLE, "The Accept header names no format Keyward answers in (JSON, XML, problem details)."),
    RequestTimeout => ("request_timeout", 408, REQUEST_TIMEOUT, "The body did not arrive in time; send it at once."),
    IdempotencyKeyInUse => ("idempotency_key_in_use", 409, CONFLICT, "A request with this Idempotency-Key is still running."),
    NameTaken => ("name_taken", 409, CONFLICT, "Another object of the account has this name."),
    KeyspaceNotEmpty => ("keyspace_not_empty", 409, CONFLICT, "The keyspace still holds active keys."),
    AlreadyMember => ("already_member", 409, CONFLICT, "The person is already a member of the account."),
    PayloadTooLarge => ("payload_too_large", 413, PAYLOAD_TOO_LARGE, "The body is larger than the route accepts."),
    UnsupportedMediaType => ("unsupported_media_type", 415, UNSUPPORTED_MEDIA_TYPE, "The body is not application/json."),
    IdempotencyKeyReused => ("idempotency_key_reused", 422, UNPROCESSABLE_ENTITY, "This Idempotency-Key was used for a different request."),
    RateLimited => ("rate_limited", 429, TOO_MANY_REQUESTS, "Too many requests; retry after the time given."),
    QuotaExhausted => ("quota_exhausted", 429, TOO_MANY_REQUESTS, "The quota is spent."),
    Internal => ("internal", 500, INTERNAL_SERVER_ERROR, "Something failed inside Keyward; the request id identifies it in the logs."),
    Unavailable => ("unavailable", 503, SERVICE_UNAVAILABLE, "Storage cannot be reached right now; retry later."),
    ShuttingDown => ("shutting_down", 503, SERVICE_UNAVAILABLE, "This instance is stopping; another one answers."),
}

/// An error answer: a status, a stable code, a message for people, and the extra fields
/// some codes carry.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The code's status ([`ErrorCode::status`]), but for two cases: a response of actix's
    /// without an `ApiError` keeps its own 4xx, and a kept refusal replays the status it
    /// was stored with.
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub details: Vec<FieldError>,
    /// For 429: which limit (`ip`, `key`, `account`, `endpoint`, `login`) and for how long.
    pub retry: Option<(&'static str, u64)>,
    /// Not an error: the stored response of an idempotency key, sent again as it was.
    pub replay: Option<Box<(StatusCode, web::Bytes)>>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { status: code.status(), code, message: message.into(), details: Vec::new(), retry: None, replay: None }
    }

    /// Not an error: a response kept for an idempotency key, to send again as it was.
    pub fn replaying(status: StatusCode, body: web::Bytes) -> Self {
        Self { status, replay: Some(Box::new((status, body))), ..Self::new(ErrorCode::Internal, "") }
    }

    pub fn validation(details: Vec<FieldError>) -> Self {
        let message = match details.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            _ => format!("{} fields are invalid", details.len()),
        };
        Self { details, ..Self::new(ErrorCode::ValidationFailed, message) }
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError { field: field.to_owned(), message: message.into() }])
    }

    pub fn unauthorized() -> Self {
        Self::new(ErrorCode::Unauthorized, "a valid API key is required (Authorization: Bearer <key>)")
    }

    pub fn not_found() -> Self {
        Self::new(ErrorCode::NotFound, "no such object")
    }

    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "an internal error occurred")
    }

    /// The envelope for a response that carries no `ApiError` (actix's own 404/405, a
    /// panic caught by actix, an extractor we did not configure).
    fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::new(ErrorCode::NotFound, "no such route"),
            StatusCode::METHOD_NOT_ALLOWED => {
                Self::new(ErrorCode::MethodNotAllowed, "this route does not accept this method")
            }
            StatusCode::PAYLOAD_TOO_LARGE => Self::new(ErrorCode::PayloadTooLarge, "the body is too large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                Self::new(ErrorCode::UnsupportedMediaType, "the body must be application/json")
            }
            StatusCode::SERVICE_UNAVAILABLE => Self::new(ErrorCode::Unavailable, "storage is unavailable"),
            s if s.is_client_error() => {
                Self { status: s, ..Self::new(ErrorCode::ValidationFailed, "the request is not valid") }
            }
            _ => Self::internal(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
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
            ApiError::new(ErrorCode::Unavailable, "storage is unavailable; retry later")
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
            AuthError::KeyInactive => Self::new(ErrorCode::KeyInactive, "the key is disabled"),
            AuthError::IpNotAllowed => Self::new(ErrorCode::IpNotAllowed, "the key may not be used from this address"),
            AuthError::ServiceKey => Self::new(ErrorCode::Forbidden, "service keys cannot call the management API"),
            AuthError::NoAccount => Self::new(
                ErrorCode::Forbidden,
                "this login belongs to no account yet: open the link of an invitation to join one",
            ),
            AuthError::Storage(e) => storage(&e),
        }
    }
}

impl From<PeopleError> for ApiError {
    fn from(error: PeopleError) -> Self {
        match error {
            PeopleError::InvalidCredentials => Self::new(ErrorCode::InvalidCredentials, "wrong email or password"),
            PeopleError::AlreadyMember { field } => {
                let why = error.to_string();
                Self {
                    details: vec![FieldError { field: field.into(), message: why.clone() }],
                    ..Self::new(ErrorCode::AlreadyMember, format!("{field}: {why}"))
                }
            }
            PeopleError::Throttled { retry_after_seconds } => Self {
                retry: Some(("login", retry_after_seconds)),
                ..Self::new(ErrorCode::RateLimited, "too many login attempts; try again later")
            },
            PeopleError::SessionRequired => {
                Self::new(ErrorCode::SessionRequired, "this route needs a login session (cookie), not an API key")
            }
            PeopleError::SignInRequired => Self::new(
                ErrorCode::Unauthorized,
                "sign in first (POST /v1/auth/login); an invitation to an address with a login takes that login's session",
            ),
            PeopleError::StepUpRequired => {
                Self::new(ErrorCode::StepUpRequired, "re-enter your password first: POST /v1/account/verify-password")
            }
            PeopleError::PasswordChangeRequired => Self::new(
                ErrorCode::PasswordChangeRequired,
                "this password was chosen by someone else: change it first (POST /v1/account/password)",
            ),
            PeopleError::PlanRequired => {
                Self::new(ErrorCode::PlanRequired, "the account's plan does not include account keys")
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
            ManageError::InsufficientScope(scope) => {
                Self::new(ErrorCode::InsufficientScope, format!("this operation needs the {scope} scope"))
            }
            ManageError::NotFound => Self::not_found(),
            ManageError::Invalid(errors) => Self::validation(errors.errors().to_vec()),
            ManageError::NameTaken => {
                // The domain's own words, once: the message and the field's detail.
                let why = ManageError::NameTaken.to_string();
                Self {
                    details: vec![FieldError { field: "name".into(), message: why.clone() }],
                    ..Self::new(ErrorCode::NameTaken, format!("name: {why}"))
                }
            }
            ManageError::KeyLimitReached => {
                Self::new(ErrorCode::KeyLimitReached, "the account's plan allows no more active keys")
            }
            ManageError::KeyspaceNotEmpty => {
                Self::new(ErrorCode::KeyspaceNotEmpty, "revoke the keyspace's active keys before deleting it")
            }
            ManageError::Forbidden(why) => Self::new(ErrorCode::Forbidden, why.to_string()),
            ManageError::LegacyGuessing { retry_after_seconds } => Self {
                retry: Some(("account", retry_after_seconds)),
                ..Self::new(
                    ErrorCode::RateLimited,
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

/// An error as RFC 9457 problem details, for a client that accepts
/// `application/problem+json`: the standard members, then the envelope's as extensions.
#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'static str,
    status: u16,
    detail: &'a str,
    instance: RequestId,
    #[serde(flatten)]
    envelope: &'a Envelope<'a>,
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

/// Whether a response is a page (the dashboard's own error pages), which the envelope
/// leaves as it is.
fn is_html<B>(response: &ServiceResponse<B>) -> bool {
    response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/html"))
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
    let instruments = req.app_data::<web::Data<crate::telemetry::Instruments>>().cloned();
    let route = crate::telemetry::Route::of(req.request());
    // An OpenTelemetry span when traces are exported and this request is sampled
    // (`keyward_telemetry`'s filter); otherwise disabled, for a branch.
    // Its name is the route's template, never the path: paths hold ids. (Formatted only
    // when the span is enabled.)
    let span = tracing::info_span!(
        target: keyward_telemetry::SPAN_TARGET,
        "request",
        otel.name = %crate::telemetry::SpanName(&method, route.as_ref()),
        otel.kind = "server",
        http.request.method = method.as_str(),
        http.route = route.as_ref().map(crate::telemetry::Route::as_str),
        http.response.status_code = tracing::field::Empty,
        request_id = %request_id,
    );
    // An Arc clone: the URL is only read when rendering an error.
    let public_url = req.app_data::<web::Data<PublicUrl>>().cloned();
    // The API answers in what the client accepts; other paths (error pages, metrics) as
    // they are.
    // A gateway's check carries its client's Accept (a browser's text/html): answered in
    // JSON whatever it asks, never 406, which a gateway would turn into a 500.
    let api = (uri.path() == "/v1" || uri.path().starts_with("/v1/"))
        && !uri.path().starts_with(crate::routes::FORWARD_AUTH_PREFIX);
    let representation = media::negotiate(req.headers().get(header::ACCEPT));
    let response = if representation.is_none() && api {
        let refusal = ApiError::new(
            ErrorCode::NotAcceptable,
            "answers are application/json, application/xml or application/problem+json",
        );
        req.error_response(refusal).map_into_right_body()
    } else {
        // A panic in a handler must not drop the connection: it becomes a 500 envelope.
        // The request was moved into the handler, so the response is attached to a stand-in.
        match std::panic::AssertUnwindSafe(next.call(req).instrument(span.clone())).catch_unwind().await {
            Ok(response) => response?.map_into_left_body(),
            Err(_) => {
                tracing::error!(%request_id, "a handler panicked");
                let stand_in = actix_web::test::TestRequest::default().to_http_request();
                ServiceResponse::new(stand_in, HttpResponse::InternalServerError().finish()).map_into_right_body()
            }
        }
    };
    let representation = representation.unwrap_or(media::Representation::DEFAULT);
    let replay = response.response().error().and_then(|e| e.as_error::<ApiError>()).and_then(|e| e.replay.clone());
    let mut response = if let Some((status, body)) = replay.map(|r| *r) {
        let mut replayed = HttpResponse::build(status);
        // A replay may carry a plaintext shown once, like the answer it repeats: no cache.
        replayed
            .content_type("application/json")
            .insert_header(("idempotent-replayed", "true"))
            .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"));
        response.into_response(replayed.body(body)).map_into_right_body()
    } else if (response.status().is_client_error() || response.status().is_server_error()) && !is_html(&response) {
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
            error: api_error.code.as_str(),
            message: &api_error.message,
            request_id,
            documentation_url: format!(
                "{}/docs/errors/{}",
                public_url.as_ref().map_or("", |u| u.0.as_str()),
                api_error.code.as_str()
            ),
            details: &api_error.details,
            tier: api_error.retry.map(|(tier, _)| tier),
            retry_after_seconds: api_error.retry.map(|(_, seconds)| seconds),
        };
        let mut rendered = if representation.problem {
            let problem = Problem {
                kind: &body.documentation_url,
                title: api_error.code.description(),
                status: api_error.status.as_u16(),
                detail: &api_error.message,
                instance: request_id,
                envelope: &body,
            };
            let mut rendered = HttpResponse::build(api_error.status);
            rendered.content_type(media::PROBLEM_JSON);
            rendered.body(serde_json::to_vec(&problem).unwrap_or_default())
        } else {
            HttpResponse::build(api_error.status).json(body)
        };
        for (name, value) in response.headers() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                rendered.headers_mut().append(name.clone(), value.clone());
            }
        }
        response.into_response(rendered).map_into_right_body()
    } else {
        response
    };
    // The document is JSON whatever was asked: it is what OpenAPI tools read.
    if representation.format == media::Format::Xml && uri.path() != "/v1/openapi.json" {
        response = media::into_xml(response).await;
    }
    if api {
        response.headers_mut().append(header::VARY, header::HeaderValue::from_static("accept"));
    }
    if let Some(value) = crate::headers::header_value(format_args!("{request_id}")) {
        response.headers_mut().insert(header::HeaderName::from_static("x-request-id"), value);
    }
    let (request, http_response) = response.into_parts();
    let mut http_response = http_response;
    crate::headers::add_headers(&request, http_response.headers_mut());
    let response = ServiceResponse::new(request, http_response);
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    if let Some(instruments) = instruments {
        instruments.request(&method, route, status, started.elapsed().as_secs_f64());
    }
    tracing::info!(
        target: "keyward::access",
        %request_id,
        %method,
        path = %crate::telemetry::LoggedPath(uri.path()),
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    Ok(response)
}
