//! What a client gets by `Accept` (issue #15): JSON by default, XML for `application/xml`
//! (or `text/xml`), RFC 9457 problem details for errors when `application/problem+json` is
//! accepted, and 406 `not_acceptable` under `/v1` when none of these is.
//!
//! One set of handlers: they answer JSON, and [`into_xml`] renders that JSON as XML for a
//! client that asked for it. The envelope middleware ([`crate::error::envelope`]) calls
//! [`negotiate`] first and the renderers last, so errors, replays and successes alike are
//! represented the same way.

use actix_web::{
    HttpResponse,
    body::{EitherBody, MessageBody},
    dev::ServiceResponse,
    http::header::{self, HeaderValue},
};
use serde_json::Value;

/// The body formats Keyward writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Xml,
}

/// What the client accepts, as far as Keyward serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Representation {
    pub format: Format,
    /// Errors as `application/problem+json` (RFC 9457), when asked for by name.
    pub problem: bool,
}

impl Representation {
    pub(crate) const DEFAULT: Self = Self { format: Format::Json, problem: false };
}

pub(crate) const XML: &str = "application/xml; charset=utf-8";
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// The most a JSON body may be to be rendered as XML (the largest page is far smaller).
const MAX_CONVERTED_BODY: usize = 16 << 20;

/// The representation `accept` asks for, or `None` when it accepts nothing Keyward writes.
/// No header, an unreadable one, `*/*` and `application/json` (what nearly every client
/// sends) are decided without parsing.
pub(crate) fn negotiate(accept: Option<&HeaderValue>) -> Option<Representation> {
    let Some(text) = accept.and_then(|value| value.to_str().ok()).map(str::trim) else {
        return Some(Representation::DEFAULT);
    };
    if text.is_empty() || text == "*/*" || text == "application/json" {
        return Some(Representation::DEFAULT);
    }
    // Per candidate: the quality of the most specific range that names it.
    let (mut json, mut xml, mut problem) = (Quality::UNNAMED, Quality::UNNAMED, Quality::UNNAMED);
    for range in text.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0)
            .clamp(0.0, 1.0);
        // Specificity: 2 for the exact type, 1 for `type/*`, 0 for `*/*`.
        match media.as_str() {
            "application/json" => json.offer(2, q),
            "application/xml" | "text/xml" => xml.offer(2, q),
            "application/problem+json" => problem.offer(2, q),
            "application/*" => {
                json.offer(1, q);
                xml.offer(1, q);
            }
            "text/*" => xml.offer(1, q),
            "*/*" => {
                json.offer(0, q);
                xml.offer(0, q);
            }
            _ => {}
        }
    }
    let problem = problem.q > 0.0;
    let format = match (json.q > 0.0, xml.q > 0.0) {
        (_, true) if xml.q > json.q => Format::Xml,
        (true, _) | (_, true) => Format::Json,
        // Only problem details accepted: errors as asked, successes as plain JSON.
        (false, false) if problem => Format::Json,
        (false, false) => return None,
    };
    Some(Representation { format, problem: problem && format == Format::Json })
}

/// A candidate's quality, from the most specific range naming it (`*/*` < `type/*` < exact).
#[derive(Debug, Clone, Copy)]
struct Quality {
    specificity: i8,
    q: f32,
}

impl Quality {
    const UNNAMED: Self = Self { specificity: -1, q: 0.0 };

    fn offer(&mut self, specificity: i8, q: f32) {
        if specificity > self.specificity {
            *self = Self { specificity, q };
        }
    }
}

/// Renders a JSON response as XML, keeping its status and headers; any other response is
/// returned as it was.
pub(crate) async fn into_xml<B: MessageBody + 'static>(
    response: ServiceResponse<EitherBody<B>>,
) -> ServiceResponse<EitherBody<B>> {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return response;
    }
    let (request, response) = response.into_parts();
    let (head, body) = response.into_parts();
    let bytes = match actix_web::body::to_bytes_limited(body, MAX_CONVERTED_BODY).await {
        Ok(Ok(bytes)) => bytes,
        _ => {
            tracing::error!("a JSON response could not be read to render it as XML");
            return ServiceResponse::new(request, HttpResponse::InternalServerError().finish()).map_into_right_body();
        }
    };
    // A body labelled JSON that does not parse goes out as it came: the client still gets
    // the answer (in JSON), and nothing here can turn a success into a bare 500.
    let mut rendered = match serde_json::from_slice::<Value>(&bytes) {
        Ok(value) => HttpResponse::build(head.status()).content_type(XML).body(to_xml(&value)),
        Err(_) => {
            tracing::error!("a response labelled JSON did not parse as JSON; sent as JSON");
            HttpResponse::build(head.status()).content_type("application/json").body(bytes)
        }
    };
    for (name, value) in head.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rendered.headers_mut().append(name.clone(), value.clone());
        }
    }
    ServiceResponse::new(request, rendered).map_into_right_body()
}

/// A JSON value as an XML document with the root element `<response>`: an object's members
/// become child elements of their name, an array's items `<item>` elements, `null` an empty
/// element with `nil="true"`. A member whose name is not an XML name (metadata is the
/// customer's) becomes `<entry key="…">`.
pub(crate) fn to_xml(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    element(&mut out, "response", value);
    out.push('\n');
    out
}

fn element(out: &mut String, name: &str, value: &Value) {
    let named = is_xml_name(name);
    out.push('<');
    if named {
        out.push_str(name);
    } else {
        out.push_str("entry key=\"");
        escape(out, name);
        out.push('"');
    }
    let tag = if named { name } else { "entry" };
    match value {
        Value::Null => {
            out.push_str(" nil=\"true\"/>");
            return;
        }
        Value::Bool(b) => {
            out.push('>');
            out.push_str(if *b { "true" } else { "false" });
        }
        Value::Number(n) => {
            out.push('>');
            out.push_str(&n.to_string());
        }
        Value::String(s) => {
            out.push('>');
            escape(out, s);
        }
        Value::Array(items) => {
            out.push('>');
            for item in items {
                element(out, "item", item);
            }
        }
        Value::Object(members) => {
            out.push('>');
            for (key, member) in members {
                element(out, key, member);
            }
        }
    }
    out.push_str("</");
    out.push_str(tag);
    out.push('>');
}

/// An XML 1.0 name Keyward may use as is: ASCII letters, digits, `_`, `-`, `.`, not starting
/// with a digit, `-`, `.` or the reserved `xml`.
fn is_xml_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && (bytes[0].is_ascii_alphabetic() || bytes[0] == b'_')
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !name.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("xml"))
}

/// Text or attribute content: markup escaped; characters XML 1.0 cannot carry at all (most
/// C0 controls) become U+FFFD.
fn escape(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> Option<Representation> {
        negotiate(Some(&HeaderValue::from_str(value).unwrap()))
    }

    const XML_ONLY: Representation = Representation { format: Format::Xml, problem: false };
    const PROBLEM: Representation = Representation { format: Format::Json, problem: true };

    #[test]
    fn json_unless_xml_is_preferred() {
        assert_eq!(negotiate(None), Some(Representation::DEFAULT));
        for json in
            ["*/*", "application/json", "application/*", "text/html, */*;q=0.1", "application/json, application/xml"]
        {
            assert_eq!(accept(json), Some(Representation::DEFAULT), "{json}");
        }
        for xml in ["application/xml", "text/xml", "application/json;q=0.5, application/xml", "text/*"] {
            assert_eq!(accept(xml), Some(XML_ONLY), "{xml}");
        }
        assert_eq!(accept("application/xml;q=0, */*"), Some(Representation::DEFAULT), "q=0 refuses");
    }

    #[test]
    fn problem_details_only_when_named() {
        assert_eq!(accept("application/json, application/problem+json"), Some(PROBLEM));
        assert_eq!(accept("application/problem+json"), Some(PROBLEM));
        assert_eq!(accept("application/problem+json;q=0, application/json"), Some(Representation::DEFAULT));
    }

    #[test]
    fn nothing_served_is_none() {
        for refused in ["text/html", "image/png", "application/json;q=0", "text/plain, application/pdf"] {
            assert_eq!(accept(refused), None, "{refused}");
        }
    }

    #[test]
    fn json_becomes_well_formed_xml() {
        let value = serde_json::json!({
            "data": [{"id": "key_1", "valid": true, "n": 3}],
            "next_cursor": null,
            "metadata": {"plan tier": "<gold> & \"co\"", "xmlish": "x", "ok": "\u{1}"},
        });
        assert_eq!(
            to_xml(&value),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<response><data><item><id>key_1</id><n>3</n>\
             <valid>true</valid></item></data><metadata><ok>\u{FFFD}</ok><entry key=\"plan tier\">\
             &lt;gold&gt; &amp; &quot;co&quot;</entry><entry key=\"xmlish\">x</entry></metadata>\
             <next_cursor nil=\"true\"/></response>\n"
        );
    }
}
