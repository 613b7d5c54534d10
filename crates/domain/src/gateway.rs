//! Gateways (issue #31, docs/gateways.md): a reverse proxy — nginx's `auth_request`,
//! Caddy's and Traefik's forward auth, Envoy's `ext_authz` — asks Keyward whether a request
//! may pass, naming the keyspace whose keys it accepts. A keyspace's [`RouteTable`] says
//! what a key needs for a method and path: an ordered list of rules, the first match wins,
//! and a default for the paths no rule matches.
//!
//! Paths are compared after [`normalize_path`], so that a request cannot slip past a rule
//! by spelling its path another way (`/admin/`, `//admin`, `/x/../admin`, `/%61dmin`,
//! `/admin;x`): the normal form is at least as strict as what an upstream would serve.

use std::{borrow::Cow, fmt};

use time::OffsetDateTime;

use crate::{
    id::{AccountId, KeyspaceId},
    plan::text_enum,
    scope::{Scope, ScopeSet},
    validation::FieldErrors,
};

/// Rules a keyspace may hold.
pub const MAX_RULES: usize = 200;
/// The longest path pattern.
pub const MAX_PATTERN_LEN: usize = 512;
/// Methods a rule may name.
const MAX_METHODS: usize = 16;
const MAX_METHOD_LEN: usize = 32;
const MAX_PARAMETER_LEN: usize = 64;
/// The longest request path looked at (nginx's default large header buffer is 8 KiB).
const MAX_PATH_LEN: usize = 8192;

/// What a path no rule matches needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteDefault {
    /// Any valid key of the keyspace (what a keyspace without rules does: key-auth).
    #[default]
    AnyKey,
    /// Nothing passes: 403 `ROUTE_NOT_ALLOWED`.
    Deny,
}

text_enum!(RouteDefault { AnyKey => "any_key", Deny => "deny" });

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    /// `*`: exactly one segment.
    One,
}

/// A path pattern: `/` and segments, each literal or `*` (one segment), the last one
/// possibly `**` (any number of segments, none included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    text: Box<str>,
    segments: Box<[Segment]>,
    tail: bool,
}

impl PathPattern {
    pub fn new(text: &str) -> Result<Self, InvalidPattern> {
        if text.len() > MAX_PATTERN_LEN {
            return Err(InvalidPattern::TooLong);
        }
        let Some(rest) = text.strip_prefix('/') else { return Err(InvalidPattern::Relative) };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let mut segments = Vec::new();
        let mut tail = false;
        if !rest.is_empty() {
            let parts: Vec<&str> = rest.split('/').collect();
            for (i, part) in parts.iter().enumerate() {
                match *part {
                    "**" if i + 1 == parts.len() => tail = true,
                    "**" => return Err(InvalidPattern::TailInside),
                    "*" => segments.push(Segment::One),
                    "" | "." | ".." => return Err(InvalidPattern::EmptySegment),
                    part if part.contains('*') => return Err(InvalidPattern::PartialWildcard),
                    part if part
                        .chars()
                        .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '%' | '?' | '#' | '\\' | ';')) =>
                    {
                        return Err(InvalidPattern::Character);
                    }
                    part => segments.push(Segment::Literal(part.into())),
                }
            }
        }
        Ok(Self { text: text.into(), segments: segments.into(), tail })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern matches `path`, a path in [`normalize_path`]'s form.
    pub fn matches(&self, path: &str) -> bool {
        let mut parts = path.split('/').filter(|s| !s.is_empty());
        for segment in &*self.segments {
            match (segment, parts.next()) {
                (_, None) => return false,
                (Segment::One, Some(_)) => {}
                (Segment::Literal(literal), Some(part)) if **literal == *part => {}
                (Segment::Literal(_), Some(_)) => return false,
            }
        }
        self.tail || parts.next().is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPattern {
    #[error("a path pattern starts with /")]
    Relative,
    #[error("a path pattern is at most 512 characters")]
    TooLong,
    #[error("** may only end a path pattern")]
    TailInside,
    #[error("* and ** stand for whole segments (/v1/*/items, /v1/**), not parts of one")]
    PartialWildcard,
    #[error("a path pattern has no empty, . or .. segments")]
    EmptySegment,
    #[error("a path pattern holds no %, ?, #, \\, ;, spaces or control characters")]
    Character,
}

/// One rule: the methods (none: every method), the path pattern, the scopes a key needs
/// (none: any valid key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    methods: Box<[Box<str>]>,
    pub path: PathPattern,
    pub scopes: ScopeSet,
}

impl RouteRule {
    pub fn methods(&self) -> impl Iterator<Item = &str> {
        self.methods.iter().map(|m| &**m)
    }

    fn admits_method(&self, method: &str) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
    }
}

/// A keyspace's route rules.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteTable {
    pub default: RouteDefault,
    /// A query parameter of the original URI that may carry the key (`?api_key=…`), for
    /// clients that cannot send a header; `None`: headers only.
    pub query_parameter: Option<Box<str>>,
    pub rules: Vec<RouteRule>,
}

/// What a request needs, by the route table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement<'a> {
    /// A valid key holding these scopes (none: any valid key).
    Scopes(&'a [Scope]),
    /// Nothing passes.
    Denied,
}

/// A route table as written (the API's body, the stored JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RouteTableInput {
    #[serde(default)]
    pub default: RouteDefault,
    #[serde(default)]
    pub query_parameter: Option<String>,
    #[serde(default)]
    pub rules: Vec<RouteRuleInput>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RouteRuleInput {
    #[serde(default)]
    pub methods: Vec<String>,
    pub path: String,
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl RouteTable {
    /// Checks `input`; every error names its field (`rules[2].path`).
    pub fn parse(input: &RouteTableInput) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::new();
        let query_parameter = match input.query_parameter.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(name)
                if name.len() <= MAX_PARAMETER_LEN
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) =>
            {
                Some(name.into())
            }
            Some(_) => {
                errors.push("query_parameter", "a parameter name of at most 64 letters, digits, _ - and .");
                None
            }
        };
        if input.rules.len() > MAX_RULES {
            errors.push("rules", format!("at most {MAX_RULES} rules"));
            return Err(errors);
        }
        let mut rules = Vec::with_capacity(input.rules.len());
        for (i, rule) in input.rules.iter().enumerate() {
            let path = errors.check(&format!("rules[{i}].path"), PathPattern::new(&rule.path));
            let methods = parse_methods(&mut errors, i, &rule.methods);
            let scopes = errors.check(&format!("rules[{i}].scopes"), ScopeSet::parse(&rule.scopes));
            if let (Some(path), Some(scopes)) = (path, scopes) {
                rules.push(RouteRule { methods, path, scopes });
            }
        }
        errors.into_result()?;
        Ok(Self { default: input.default, query_parameter, rules })
    }

    /// The table as written, for the API and for storage.
    pub fn to_input(&self) -> RouteTableInput {
        RouteTableInput {
            default: self.default,
            query_parameter: self.query_parameter.as_deref().map(str::to_owned),
            rules: self
                .rules
                .iter()
                .map(|r| RouteRuleInput {
                    methods: r.methods().map(str::to_owned).collect(),
                    path: r.path.as_str().to_owned(),
                    scopes: r.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
                })
                .collect(),
        }
    }

    /// What a request with `method` to `path` ([`normalize_path`]'s form) needs: the first
    /// rule that matches, or the default.
    pub fn requirement(&self, method: &str, path: &str) -> Requirement<'_> {
        match self.rules.iter().find(|rule| rule.admits_method(method) && rule.path.matches(path)) {
            Some(rule) => Requirement::Scopes(rule.scopes.as_slice()),
            None => match self.default {
                RouteDefault::AnyKey => Requirement::Scopes(&[]),
                RouteDefault::Deny => Requirement::Denied,
            },
        }
    }
}

fn parse_methods(errors: &mut FieldErrors, rule: usize, methods: &[String]) -> Box<[Box<str>]> {
    if methods.len() > MAX_METHODS {
        errors.push(format!("rules[{rule}].methods"), format!("at most {MAX_METHODS} methods"));
        return Box::default();
    }
    let mut parsed: Vec<Box<str>> = Vec::with_capacity(methods.len());
    for (j, method) in methods.iter().enumerate() {
        let method = method.trim();
        if method == "*" {
            return Box::default();
        }
        if method.is_empty()
            || method.len() > MAX_METHOD_LEN
            || !method.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_')
        {
            errors.push(format!("rules[{rule}].methods[{j}]"), "an HTTP method (GET, POST, …) or *");
            continue;
        }
        let upper = method.to_ascii_uppercase();
        if !parsed.iter().any(|m| **m == *upper) {
            parsed.push(upper.into());
        }
    }
    parsed.into()
}

/// A keyspace as the forward-auth route sees it: whose it is and its route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    pub keyspace_id: KeyspaceId,
    pub account_id: AccountId,
    pub routes: RouteTable,
    /// When the route table was last written; `None`: never (the default table).
    pub updated_at: Option<OffsetDateTime>,
}

/// A request path a gateway forwarded that cannot be compared safely: its segments decode
/// to a `/`, `\`, `?`, `#` or `%` (a second level of encoding), a control character or
/// bytes that are not UTF-8, or it is not a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the original URI is not a path that can be compared with the route rules")]
pub struct MalformedPath;

/// The path of `uri` (an origin-form `/a/b?c` or an absolute `https://host/a/b`) in the
/// form route rules compare: no query or fragment, each segment percent-decoded, empty and
/// `.` segments dropped, `..` applied, each segment cut at a `;` (matrix parameters, which
/// servlet containers drop), no trailing slash. Borrowed when already in that form — the
/// common case, which allocates nothing.
pub fn normalize_path(uri: &str) -> Result<Cow<'_, str>, MalformedPath> {
    let path = strip_authority(uri);
    let path = path.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') || path.len() > MAX_PATH_LEN {
        return Err(MalformedPath);
    }
    if path == "/" {
        return Ok(Cow::Borrowed(path));
    }
    // Printable ASCII only on the fast path: anything else (a C1 control is two bytes of
    // UTF-8) is looked at character by character below.
    let clean = path[1..].split('/').all(|segment| {
        !matches!(segment, "" | "." | "..")
            && segment.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'%' | b'\\' | b';'))
    });
    if clean {
        return Ok(Cow::Borrowed(path));
    }
    let mut segments: Vec<Cow<'_, str>> = Vec::new();
    for raw in path[1..].split('/') {
        let decoded = percent_decode(raw)?;
        // Encoded delimiters and a second level of encoding are refused: an upstream that
        // decodes once more (or splits on a decoded `/`) would see another path.
        if decoded.chars().any(|c| c.is_control() || matches!(c, '/' | '\\' | '?' | '#' | '%')) {
            return Err(MalformedPath);
        }
        let segment = match decoded.find(';') {
            Some(at) => Cow::Owned(decoded[..at].to_owned()),
            None => decoded,
        };
        match &*segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    let mut normal = String::with_capacity(path.len());
    for segment in &segments {
        normal.push('/');
        normal.push_str(segment);
    }
    if normal.is_empty() {
        normal.push('/');
    }
    Ok(Cow::Owned(normal))
}

fn strip_authority(uri: &str) -> &str {
    for scheme in ["http://", "https://"] {
        // `get`, not an index: the bytes at the scheme's length may be inside a character.
        if uri.get(..scheme.len()).is_some_and(|head| head.eq_ignore_ascii_case(scheme)) {
            let rest = &uri[scheme.len()..];
            return rest.find('/').map_or("/", |at| &rest[at..]);
        }
    }
    uri
}

fn percent_decode(raw: &str) -> Result<Cow<'_, str>, MalformedPath> {
    if !raw.contains('%') {
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(MalformedPath)?;
            let hex = std::str::from_utf8(hex).map_err(|_| MalformedPath)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| MalformedPath)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map(Cow::Owned).map_err(|_| MalformedPath)
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
#[path = "gateway_tests.rs"]
mod tests;
