//! The bodies of `GET`/`PUT /v1/keyspaces/{id}/routes`.

use keyward_domain::{
    KeyspaceId,
    gateway::{Gate, RouteDefault, RouteRuleInput, RouteTableInput},
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// What a path no rule matches needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RouteDefaultName {
    /// Any valid key of the keyspace.
    #[default]
    AnyKey,
    /// Nothing passes: 403 `route_not_allowed`.
    Deny,
}

impl From<RouteDefaultName> for RouteDefault {
    fn from(name: RouteDefaultName) -> Self {
        match name {
            RouteDefaultName::AnyKey => Self::AnyKey,
            RouteDefaultName::Deny => Self::Deny,
        }
    }
}

impl From<RouteDefault> for RouteDefaultName {
    fn from(default: RouteDefault) -> Self {
        match default {
            RouteDefault::AnyKey => Self::AnyKey,
            RouteDefault::Deny => Self::Deny,
        }
    }
}

/// One rule: the first rule whose methods and path match a request decides what its key
/// needs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteRuleDto {
    /// The methods it applies to; empty or `["*"]`: every method.
    #[serde(default)]
    #[schema(max_items = 16, example = json!(["GET", "HEAD"]))]
    pub methods: Vec<String>,
    /// `/` and segments: literal, `*` (one segment) or, last, `**` (any number of them).
    #[schema(max_length = 512, pattern = "^/[^%?#\\\\;\\s]*$", example = "/v1/servers/**")]
    pub path: String,
    /// The scopes a key needs; empty: any valid key.
    #[serde(default)]
    #[schema(value_type = Vec<crate::dto::schema::ScopeText>, max_items = 100)]
    pub scopes: Vec<String>,
}

/// `PUT /v1/keyspaces/{id}/routes`: the whole table, replacing the one before.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteTableRequest {
    #[serde(default)]
    pub default: RouteDefaultName,
    /// A query parameter of the original URI that may carry the key (`api_key`), for
    /// clients that cannot send a header; `null`: headers only.
    #[serde(default)]
    #[schema(max_length = 64, pattern = "^[A-Za-z0-9_.-]*$")]
    pub query_parameter: Option<String>,
    #[serde(default)]
    #[schema(max_items = 200)]
    pub rules: Vec<RouteRuleDto>,
}

impl From<RouteTableRequest> for RouteTableInput {
    fn from(body: RouteTableRequest) -> Self {
        Self {
            default: body.default.into(),
            query_parameter: body.query_parameter,
            rules: body
                .rules
                .into_iter()
                .map(|r| RouteRuleInput { methods: r.methods, path: r.path, scopes: r.scopes })
                .collect(),
        }
    }
}

/// A keyspace's route table.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteTableResponse {
    #[schema(value_type = String)]
    pub keyspace_id: KeyspaceId,
    pub default: RouteDefaultName,
    pub query_parameter: Option<String>,
    pub rules: Vec<RouteRuleDto>,
    /// When the table was last written; `null`: never (the default table).
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub updated_at: Option<OffsetDateTime>,
}

impl From<&Gate> for RouteTableResponse {
    fn from(gate: &Gate) -> Self {
        let input = gate.routes.to_input();
        Self {
            keyspace_id: gate.keyspace_id,
            default: input.default.into(),
            query_parameter: input.query_parameter,
            rules: input
                .rules
                .into_iter()
                .map(|r| RouteRuleDto { methods: r.methods, path: r.path, scopes: r.scopes })
                .collect(),
            updated_at: gate.updated_at,
        }
    }
}
