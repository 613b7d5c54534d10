//! Reading requests: JSON bodies (with errors that name the field), query strings, the
//! client's IP, and the credential.

use std::net::IpAddr;

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, http::header, web};
use base64::Engine as _;
use futures_util::future::LocalBoxFuture;
use ipnet::IpNet;
use keyward_domain::{AccountId, PlaintextKey, RequestId, audit::RequestContext};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorCode};

/// Body limits of SPEC §5.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;
pub const IMPORT_BODY_LIMIT: usize = 1024 * 1024;

/// How long a client may take to send a whole body, once its head has arrived (actix's
/// `client_request_timeout` bounds the head). A body still arriving then is answered 408:
/// a slow client cannot hold a request — or anything the request holds — open at will.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A JSON body. Not JSON at all → 400 `invalid_json`; JSON of the wrong shape (unknown or
/// missing field, wrong type) → 400 `validation_failed` naming the field; not
/// `application/json` → 415; too large → 413.
///
/// Extraction never fails: the outcome waits in the value until the handler asks for it
/// with [`Json::into_inner`], after it has authenticated the caller. Actix polls a handler's
/// extractors together, so an extractor that failed on its own would let a malformed body
/// answer before the credential (an anonymous client learning the body's rules, 400
/// instead of 401).
#[derive(Debug)]
pub struct Json<T>(Result<T, ApiError>);

impl<T> Json<T> {
    /// The body, or the error that reading or parsing it met.
    pub fn into_inner(self) -> Result<T, ApiError> {
        self.0
    }
}

/// The body limit of a route, as app or resource data; 64 KiB when absent.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let invalid_json =
        |e: serde_json::Error| ApiError::new(ErrorCode::InvalidJson, format!("the body is not valid JSON: {e}"));
    // Every body of this API is an object; serde would also fill a struct from an array
    // (`[]` for a body whose fields all have defaults), which no document allows.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|first| *first == b'[') {
        return Err(ApiError::field("body", "must be a JSON object"));
    }
    // The common case, a valid body, takes serde_json's fast path; only a failure is parsed
    // again, with the path of the field that failed, for the message.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    // JSON has one number type, and JSON Schema counts `3.0` as an integer: a body that
    // failed only because an integer was written with a zero fraction is read again with
    // such numbers as integers.
    if let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(bytes)
        && integral_floats_to_integers(&mut value)
        && let Ok(parsed) = serde_json::from_value(value)
    {
        return Ok(parsed);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            invalid_json(inner)
        } else {
            let field = if path == "." { "body".to_owned() } else { path };
            ApiError::field(&field, redact_values(&strip_position(&inner.to_string())))
        }
    })?;
    // Trailing characters after the value are a syntax error too.
    deserializer.end().map_err(invalid_json)?;
    Ok(value)
}

/// Rewrites every number with a zero fraction (within 64 bits) as an integer; whether any
/// was.
fn integral_floats_to_integers(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Number(number) if number.is_f64() => {
            let float = number.as_f64().unwrap_or(f64::NAN);
            // Beyond ±2^63 a float has no exact integer in 64 bits worth trusting.
            let integral = float.fract() == 0.0 && float.abs() < 9.2e18;
            if integral {
                #[allow(clippy::cast_possible_truncation)]
                let integer = float as i64;
                *value = Value::from(integer);
            }
            integral
        }
        Value::Array(items) => items.iter_mut().fold(false, |any, item| integral_floats_to_integers(item) | any),
        Value::Object(fields) => fields.values_mut().fold(false, |any, field| integral_floats_to_integers(field) | any),
        _ => false,
    }
}

/// serde quotes the string it could not use (`invalid type: string "…", expected u32`);
/// that string may be a key sent in the wrong field, so it never reaches the response.
fn redact_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find("string \"") {
        out.push_str(&rest[..start]);
        out.push_str("a string");
        let after = &rest[start + "string \"".len()..];
        rest = after.find("\", ").or_else(|| after.rfind('"')).map_or("", |end| &after[end + 1..]);
    }
    out.push_str(rest);
    out
}

/// serde_json appends " at line 1 column 17"; the field name says more.
fn strip_position(message: &str) -> String {
    message.split(" at line ").next().unwrap_or(message).to_owned()
}

fn is_json(req: &HttpRequest) -> bool {
    req.mime_type()
        .ok()
        .flatten()
        .is_some_and(|m| m.essence_str() == "application/json" || m.suffix().is_some_and(|s| s == "json"))
}

async fn read_body(req: &HttpRequest, payload: &mut Payload) -> Result<web::Bytes, ApiError> {
    let limit = req.app_data::<BodyLimit>().map_or(DEFAULT_BODY_LIMIT, |l| l.0);
    read_bounded(req.headers(), payload, limit).await
}

/// Reads a whole body of at most `limit` bytes within [`BODY_READ_TIMEOUT`]: 413 when it
/// is (or announces to be) larger, 408 when it is still arriving at the deadline.
pub(crate) async fn read_bounded<P>(
    headers: &header::HeaderMap,
    payload: &mut P,
    limit: usize,
) -> Result<web::Bytes, ApiError>
where
    P: futures_util::Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>> + Unpin,
{
    let too_large = || ApiError::new(ErrorCode::PayloadTooLarge, format!("the body exceeds {limit} bytes"));
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > limit)
    {
        return Err(too_large());
    }
    let read = async {
        let mut body = web::BytesMut::new();
        while let Some(chunk) = futures_util::StreamExt::next(payload).await {
            let chunk = chunk.map_err(|_| ApiError::new(ErrorCode::InvalidJson, "the body could not be read"))?;
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(BODY_READ_TIMEOUT, read).await.unwrap_or_else(|_| {
        Err(ApiError::new(
            ErrorCode::RequestTimeout,
            format!("the body did not arrive within {} seconds", BODY_READ_TIMEOUT.as_secs()),
        ))
    })
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let parsed = async {
                let body = read_body(&req, &mut payload).await?;
                if !is_json(&req) {
                    return Err(unsupported_media_type());
                }
                parse_json(&body)
            };
            Ok(Json(parsed.await))
        })
    }
}

fn unsupported_media_type() -> ApiError {
    ApiError::new(ErrorCode::UnsupportedMediaType, "send the body as application/json")
}

/// A JSON body that may be absent (`POST /v1/keys/{id}/rotate`): an empty body, or JSON
/// `null` (what the document's `oneOf: [null, …]` allows), is `T::default()`. Deferred
/// like [`Json`].
#[derive(Debug)]
pub struct OptionalJson<T>(Result<T, ApiError>);

impl<T> OptionalJson<T> {
    pub fn into_inner(self) -> Result<T, ApiError> {
        self.0
    }
}

impl<T: DeserializeOwned + Default + 'static> FromRequest for OptionalJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let parsed = async {
                let body = read_body(&req, &mut payload).await?;
                if body.iter().all(u8::is_ascii_whitespace) {
                    return Ok(T::default());
                }
                if !is_json(&req) {
                    return Err(unsupported_media_type());
                }
                parse_json::<Option<T>>(&body).map(Option::unwrap_or_default)
            };
            Ok(OptionalJson(parsed.await))
        })
    }
}

/// A query string; an unknown or malformed parameter is 400 `validation_failed` naming it.
/// Deferred like [`Json`]: the handler authenticates first.
#[derive(Debug)]
pub struct Query<T>(Result<T, ApiError>);

impl<T> Query<T> {
    pub fn into_inner(self) -> Result<T, ApiError> {
        self.0
    }
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(Query(serde_urlencoded_path(req.query_string()))))
    }
}

/// Parses a query string; an error names the parameter (`since`), or `query` when it
/// belongs to none.
fn serde_urlencoded_path<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    // No value with a control character (U+0000 among them) goes further: PostgreSQL's
    // text cannot hold one, and no filter, cursor or id has one.
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name.chars().any(char::is_control) {
            return Err(ApiError::field("query", "a parameter's name holds a control character"));
        }
        if value.chars().any(char::is_control) {
            return Err(ApiError::field(&name, "must not contain control characters"));
        }
    }
    let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." || path.is_empty() { "query".to_owned() } else { path };
        ApiError::field(&field, redact_values(&strip_position(&error.into_inner().to_string())))
    })
}

/// Proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Vec<IpNet>);

/// The client's address: the socket peer, unless the peer is a trusted proxy; then
/// `X-Forwarded-For` read right to left, skipping trusted hops, or without one nginx's
/// `X-Real-IP`.
pub fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    // Borrowed, not cloned: this runs on every verification.
    let trusted = req.app_data::<web::Data<TrustedProxies>>().map_or(&[][..], |t| t.0.as_slice());
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    // The rightmost untrusted hop is the last untrusted one read left to right, which needs
    // no buffer of the hops.
    let rightmost_untrusted = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
        .filter(|ip| !is_trusted(ip))
        .last();
    let real_ip = || req.headers().get("x-real-ip").and_then(|v| v.to_str().ok()?.trim().parse::<IpAddr>().ok());
    Some(rightmost_untrusted.or_else(real_ip).unwrap_or(peer))
}

/// The API key a request presents, from whichever of the three SPEC §3 forms it uses.
#[derive(Debug)]
pub struct Credential {
    pub key: PlaintextKey,
    /// The account id given as the Basic user name, which must own the key.
    pub basic_account: Option<AccountId>,
}

/// Reads the credential. `Ok(None)`: none presented. Two different keys → 400
/// `ambiguous_credentials`; an unreadable header → 401 (no oracle about the format).
pub fn credential(req: &HttpRequest) -> Result<Option<Credential>, ApiError> {
    parse_credential(req.headers().get_all(header::AUTHORIZATION), req.headers().get_all("x-api-key"))
}

/// [`credential`] over the header values themselves: every `Authorization` (Bearer or
/// Basic) and every `X-API-Key` a request carried. A parser of outside input, fuzzed
/// (`fuzz/fuzz_targets/credentials.rs`).
pub fn parse_credential<'a>(
    authorization: impl IntoIterator<Item = &'a header::HeaderValue>,
    api_keys: impl IntoIterator<Item = &'a header::HeaderValue>,
) -> Result<Option<Credential>, ApiError> {
    let mut found: Vec<Credential> = Vec::new();
    for value in authorization {
        let value = value.to_str().map_err(|_| ApiError::unauthorized())?.trim();
        let (scheme, rest) = value.split_once(' ').ok_or_else(ApiError::unauthorized)?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            found.push(Credential { key: PlaintextKey::new(rest.to_owned()), basic_account: None });
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded =
                base64::engine::general_purpose::STANDARD.decode(rest).map_err(|_| ApiError::unauthorized())?;
            let decoded = String::from_utf8(decoded).map_err(|_| ApiError::unauthorized())?;
            let (user, key) = decoded.split_once(':').ok_or_else(ApiError::unauthorized)?;
            let account = user.parse().map_err(|_| ApiError::unauthorized())?;
            found.push(Credential { key: PlaintextKey::new(key.to_owned()), basic_account: Some(account) });
        } else {
            return Err(ApiError::unauthorized());
        }
    }
    for value in api_keys {
        let value = value.to_str().map_err(|_| ApiError::unauthorized())?.trim();
        found.push(Credential { key: PlaintextKey::new(value.to_owned()), basic_account: None });
    }
    let Some(mut first) = found.pop() else { return Ok(None) };
    if found.iter().any(|other| other.key != first.key) {
        return Err(ApiError::new(ErrorCode::AmbiguousCredentials, "send one credential, not several"));
    }
    // The same key in two forms is one credential; a Basic user name in either still binds it.
    first.basic_account = first.basic_account.or_else(|| found.iter().find_map(|c| c.basic_account));
    Ok(Some(first))
}

/// Who sent the request, as the audit trail and the use cases record it.
pub fn request_context(req: &HttpRequest) -> RequestContext {
    RequestContext {
        ip: client_ip(req),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(256).collect()),
        request_id: req.extensions().get::<RequestId>().copied(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Counted {
        count: u32,
        nested: Vec<u64>,
    }

    #[test]
    fn integers_written_with_a_zero_fraction_are_integers() {
        let parsed: Counted = parse_json(br#"{"count": 3961.0, "nested": [1.0, 2]}"#).unwrap();
        assert_eq!(parsed, Counted { count: 3961, nested: vec![1, 2] });
        let fraction = parse_json::<Counted>(br#"{"count": 3961.5, "nested": []}"#).unwrap_err();
        assert_eq!(fraction.details[0].field, "count", "a real fraction is still refused, by name");
        assert!(parse_json::<Counted>(br#"{"count": -1.0, "nested": []}"#).is_err(), "and so is a negative u32");
    }

    #[derive(Debug, Default, serde::Deserialize)]
    #[allow(dead_code)] // Read by serde only.
    struct AllDefaults {
        #[serde(default)]
        grace: u32,
    }

    #[test]
    fn a_body_is_an_object_never_an_array() {
        let refused = parse_json::<AllDefaults>(b" [] ").unwrap_err();
        assert_eq!(refused.details[0].field, "body");
        assert!(parse_json::<AllDefaults>(b"[7]").is_err());
        assert!(parse_json::<AllDefaults>(b"{}").is_ok());
    }

    #[test]
    fn rejected_strings_are_not_echoed() {
        let message = r#"invalid type: string "kw_live_secret", expected u32"#;
        assert_eq!(redact_values(message), "invalid type: a string, expected u32");
        assert_eq!(redact_values("missing field `name`"), "missing field `name`");
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let request = |peer: &str, forwarded: &[&str]| {
            let mut req = actix_web::test::TestRequest::default()
                .peer_addr(format!("{peer}:443").parse().unwrap())
                .app_data(web::Data::new(TrustedProxies(vec!["10.0.0.0/8".parse().unwrap()])));
            for header in forwarded {
                req = req.append_header(("x-forwarded-for", *header));
            }
            req.to_http_request()
        };
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // An untrusted peer is the client, whatever it claims.
        assert_eq!(client_ip(&request("203.0.113.1", &["198.51.100.7"])), ip("203.0.113.1"));
        // Behind trusted proxies: the rightmost untrusted hop, across repeated headers; a
        // client-supplied leftmost entry is not believed.
        assert_eq!(client_ip(&request("10.0.0.2", &["6.6.6.6, 198.51.100.7", "10.0.0.3"])), ip("198.51.100.7"));
        assert_eq!(client_ip(&request("10.0.0.2", &["6.6.6.6", "198.51.100.7, 10.0.0.3"])), ip("198.51.100.7"));
        // Only trusted hops, or garbage: the peer.
        assert_eq!(client_ip(&request("10.0.0.2", &["10.0.0.9", "not an ip"])), ip("10.0.0.2"));
        assert_eq!(client_ip(&request("10.0.0.2", &[])), ip("10.0.0.2"));
    }
}
