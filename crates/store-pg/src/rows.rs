//! Row structs: the shape of the tables, private to this crate, converted to and from the
//! domain's types at the boundary.

use diesel::prelude::*;
use ipnet::IpNet;
use keyward_domain::{
    Account, AccountId, Actor, EventId, Hostname, IpAllowlist, Key, KeyHash, KeyId, Keyspace, KeyspaceId, ScopeSet,
    SessionId, UserId,
    audit::{AuditEvent, AuditRecord, RequestContext},
    key::ResourceBinding,
    key_format::KeyPrefix,
    password::PasswordHash,
    people::{Email, Invitation, Membership, Session, User},
    quota::QuotaBalance,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::schema::{accounts, keys, keyspaces};

pub(crate) mod webhooks;

/// A row that does not convert back into a domain value: the database holds something the
/// domain would never have written.
#[derive(Debug, thiserror::Error)]
#[error("corrupt {table} row {id}: {what}")]
pub(crate) struct CorruptRow {
    table: &'static str,
    id: Uuid,
    what: String,
}

pub(crate) fn corrupt(table: &'static str, id: Uuid) -> impl Fn(String) -> CorruptRow {
    move |what| CorruptRow { table, id, what }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = accounts, check_for_backend(diesel::pg::Pg))]
pub(crate) struct AccountRow {
    pub id: Uuid,
    pub name: String,
    pub plan: String,
    pub created_at: OffsetDateTime,
}

impl From<&Account> for AccountRow {
    fn from(a: &Account) -> Self {
        Self { id: a.id.as_uuid(), name: a.name.clone(), plan: a.plan.as_str().to_owned(), created_at: a.created_at }
    }
}

impl TryFrom<AccountRow> for Account {
    type Error = CorruptRow;

    fn try_from(row: AccountRow) -> Result<Self, Self::Error> {
        let bad = corrupt("accounts", row.id);
        Ok(Account {
            id: AccountId::from_uuid(row.id),
            name: row.name,
            plan: row.plan.parse().map_err(|e| bad(format!("plan: {e}")))?,
            created_at: row.created_at,
        })
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = keyspaces, check_for_backend(diesel::pg::Pg))]
pub(crate) struct KeyspaceRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    pub prefix: String,
    pub default_tier: String,
    pub default_scopes: Vec<String>,
    pub allowed_scopes: Option<Vec<String>>,
    pub ip_policy: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub leak_policy: Option<String>,
}

fn scope_strings(scopes: &ScopeSet) -> Vec<String> {
    scopes.iter().map(|s| s.as_str().to_owned()).collect()
}

impl From<&Keyspace> for KeyspaceRow {
    fn from(k: &Keyspace) -> Self {
        Self {
            id: k.id.as_uuid(),
            account_id: k.account_id.as_uuid(),
            name: k.name.clone(),
            prefix: k.prefix.as_str().to_owned(),
            default_tier: k.default_tier.as_str().to_owned(),
            default_scopes: scope_strings(&k.default_scopes),
            allowed_scopes: k.allowed_scopes.as_ref().map(scope_strings),
            ip_policy: k.ip_policy.as_str().to_owned(),
            created_at: k.created_at,
            updated_at: k.updated_at,
            leak_policy: k.leak_policy.map(|p| p.as_str().to_owned()),
        }
    }
}

impl TryFrom<KeyspaceRow> for Keyspace {
    type Error = CorruptRow;

    fn try_from(row: KeyspaceRow) -> Result<Self, Self::Error> {
        let bad = corrupt("keyspaces", row.id);
        Ok(Keyspace {
            id: KeyspaceId::from_uuid(row.id),
            account_id: AccountId::from_uuid(row.account_id),
            name: row.name,
            prefix: KeyPrefix::new(row.prefix).map_err(|e| bad(format!("prefix: {e}")))?,
            default_tier: row.default_tier.parse().map_err(|e| bad(format!("default_tier: {e}")))?,
            default_scopes: ScopeSet::parse(&row.default_scopes).map_err(|e| bad(format!("default_scopes: {e}")))?,
            allowed_scopes: row
                .allowed_scopes
                .map(|s| ScopeSet::parse(&s))
                .transpose()
                .map_err(|e| bad(format!("allowed_scopes: {e}")))?,
            ip_policy: row.ip_policy.parse().map_err(|e| bad(format!("ip_policy: {e}")))?,
            leak_policy: row
                .leak_policy
                .map(|p| p.parse())
                .transpose()
                .map_err(|e| bad(format!("leak_policy: {e}")))?,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = keys, check_for_backend(diesel::pg::Pg))]
pub(crate) struct KeyRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub keyspace_id: Option<Uuid>,
    pub kind: String,
    pub name: String,
    pub description: Option<String>,
    pub environment: String,
    pub key_prefix: String,
    pub hash: Vec<u8>,
    pub scopes: Vec<String>,
    pub resource: Option<String>,
    pub tier: String,
    pub rate_limits: serde_json::Value,
    pub quota: Option<serde_json::Value>,
    pub ip_allowlist: Vec<IpNet>,
    pub ip_allowlist_hosts: Vec<String>,
    pub expires_at: Option<OffsetDateTime>,
    pub idle_timeout_seconds: Option<i32>,
    pub owner_id: Option<String>,
    pub metadata: serde_json::Value,
    pub is_active: bool,
    pub revoked_at: Option<OffsetDateTime>,
    pub rotated_from: Option<Uuid>,
    pub rotated_to: Option<Uuid>,
    pub last_used_at: Option<OffsetDateTime>,
    pub usage_count: i64,
    pub created_at: OffsetDateTime,
    pub created_by: String,
    pub updated_at: OffsetDateTime,
    /// The fingerprint's bits as a bigint.
    pub quota_fingerprint: Option<i64>,
    pub quota_period: Option<i64>,
    pub quota_balance: Option<i64>,
    pub leaked_at: Option<OffsetDateTime>,
    pub leak_source: Option<String>,
}

impl From<&Key> for KeyRow {
    fn from(k: &Key) -> Self {
        Self {
            id: k.id.as_uuid(),
            account_id: k.account_id.as_uuid(),
            keyspace_id: k.keyspace_id.map(|id| id.as_uuid()),
            kind: k.kind.as_str().to_owned(),
            name: k.name.clone(),
            description: k.description.clone(),
            environment: k.environment.as_str().to_owned(),
            key_prefix: k.key_prefix.clone(),
            hash: k.hash.to_bytes().to_vec(),
            scopes: scope_strings(&k.scopes),
            resource: k.resource.as_ref().map(|r| r.as_str().to_owned()),
            tier: k.tier.as_str().to_owned(),
            rate_limits: serde_json::to_value(&k.rate_limits).unwrap_or_default(),
            quota: k.quota.as_ref().and_then(|q| serde_json::to_value(q).ok()),
            ip_allowlist: k.ip_allowlist.nets.clone(),
            ip_allowlist_hosts: k.ip_allowlist.hosts.iter().map(|h| h.as_str().to_owned()).collect(),
            expires_at: k.expires_at,
            idle_timeout_seconds: k.idle_timeout_seconds.map(|s| i32::try_from(s).unwrap_or(i32::MAX)),
            owner_id: k.owner_id.clone(),
            metadata: serde_json::Value::Object(k.metadata.clone()),
            is_active: k.is_active,
            revoked_at: k.revoked_at,
            rotated_from: k.rotated_from.map(|id| id.as_uuid()),
            rotated_to: k.rotated_to.map(|id| id.as_uuid()),
            last_used_at: k.last_used_at,
            usage_count: i64::try_from(k.usage_count).unwrap_or(i64::MAX),
            created_at: k.created_at,
            created_by: k.created_by.to_string(),
            updated_at: k.updated_at,
            quota_fingerprint: k.quota_balance.map(|b| b.fingerprint.cast_signed()),
            quota_period: k.quota_balance.map(|b| b.period),
            quota_balance: k.quota_balance.map(|b| b.remaining),
            leaked_at: k.leaked_at,
            leak_source: k.leak_source.clone(),
        }
    }
}

impl TryFrom<KeyRow> for Key {
    type Error = CorruptRow;

    fn try_from(row: KeyRow) -> Result<Self, Self::Error> {
        let bad = corrupt("keys", row.id);
        let serde_error = |field: &str| {
            let bad = &bad;
            let field = field.to_owned();
            move |e: serde_json::Error| bad(format!("{field}: {e}"))
        };
        Ok(Key {
            id: KeyId::from_uuid(row.id),
            account_id: AccountId::from_uuid(row.account_id),
            keyspace_id: row.keyspace_id.map(KeyspaceId::from_uuid),
            kind: row.kind.parse().map_err(|e| bad(format!("kind: {e}")))?,
            name: row.name,
            description: row.description,
            environment: row.environment.parse().map_err(|e| bad(format!("environment: {e}")))?,
            key_prefix: row.key_prefix,
            hash: KeyHash::from_bytes(&row.hash).ok_or_else(|| bad("hash: not 33 bytes with a known tag".into()))?,
            scopes: ScopeSet::parse(&row.scopes).map_err(|e| bad(format!("scopes: {e}")))?,
            resource: row.resource.map(ResourceBinding::new).transpose().map_err(|e| bad(format!("resource: {e}")))?,
            tier: row.tier.parse().map_err(|e| bad(format!("tier: {e}")))?,
            rate_limits: serde_json::from_value(row.rate_limits).map_err(serde_error("rate_limits"))?,
            quota: row.quota.map(serde_json::from_value).transpose().map_err(serde_error("quota"))?,
            ip_allowlist: IpAllowlist {
                nets: row.ip_allowlist,
                hosts: row
                    .ip_allowlist_hosts
                    .iter()
                    .map(|h| Hostname::new(h))
                    .collect::<Result<_, _>>()
                    .map_err(|e| bad(format!("ip_allowlist_hosts: {e}")))?,
            },
            expires_at: row.expires_at,
            idle_timeout_seconds: row.idle_timeout_seconds.map(|s| u32::try_from(s).unwrap_or(0)),
            owner_id: row.owner_id,
            metadata: match row.metadata {
                serde_json::Value::Object(map) => map,
                _ => return Err(bad("metadata: not an object".into())),
            },
            is_active: row.is_active,
            revoked_at: row.revoked_at,
            rotated_from: row.rotated_from.map(KeyId::from_uuid),
            rotated_to: row.rotated_to.map(KeyId::from_uuid),
            leaked_at: row.leaked_at,
            leak_source: row.leak_source,
            last_used_at: row.last_used_at,
            usage_count: u64::try_from(row.usage_count).unwrap_or(0),
            created_at: row.created_at,
            created_by: row.created_by.parse::<Actor>().map_err(|e| bad(format!("created_by: {e}")))?,
            updated_at: row.updated_at,
            quota_balance: match (row.quota_fingerprint, row.quota_period, row.quota_balance) {
                (Some(fingerprint), Some(period), Some(remaining)) => {
                    Some(QuotaBalance { fingerprint: fingerprint.cast_unsigned(), period, remaining })
                }
                _ => None,
            },
        })
    }
}

/// The attributes an update may change, each written only when the caller changed it
/// (`None`: the column stays as stored). Identity, hash, kind, environment, succession and
/// `revoked_at` are not among them (revocation has its own rule).
#[derive(Debug, AsChangeset)]
#[diesel(table_name = keys)]
pub(crate) struct KeyChanges<'a> {
    pub name: Option<&'a str>,
    pub description: Option<Option<&'a str>>,
    pub scopes: Option<&'a [String]>,
    pub resource: Option<Option<&'a str>>,
    pub tier: Option<&'a str>,
    pub rate_limits: Option<&'a serde_json::Value>,
    pub quota: Option<Option<&'a serde_json::Value>>,
    pub ip_allowlist: Option<&'a [IpNet]>,
    pub ip_allowlist_hosts: Option<&'a [String]>,
    pub expires_at: Option<Option<OffsetDateTime>>,
    pub idle_timeout_seconds: Option<Option<i32>>,
    pub owner_id: Option<Option<&'a str>>,
    pub metadata: Option<&'a serde_json::Value>,
    pub is_active: Option<bool>,
    pub leaked_at: Option<Option<OffsetDateTime>>,
    pub leak_source: Option<Option<&'a str>>,
    pub updated_at: OffsetDateTime,
}

impl<'a> KeyChanges<'a> {
    /// The columns in which `after` differs from `before`, and `updated_at`.
    pub fn between(before: &KeyRow, after: &'a KeyRow) -> Self {
        macro_rules! changed {
            ($field:ident, $value:expr) => {
                (before.$field != after.$field).then(|| $value)
            };
        }
        Self {
            name: changed!(name, after.name.as_str()),
            description: changed!(description, after.description.as_deref()),
            scopes: changed!(scopes, after.scopes.as_slice()),
            resource: changed!(resource, after.resource.as_deref()),
            tier: changed!(tier, after.tier.as_str()),
            rate_limits: changed!(rate_limits, &after.rate_limits),
            quota: changed!(quota, after.quota.as_ref()),
            ip_allowlist: changed!(ip_allowlist, after.ip_allowlist.as_slice()),
            ip_allowlist_hosts: changed!(ip_allowlist_hosts, after.ip_allowlist_hosts.as_slice()),
            expires_at: changed!(expires_at, after.expires_at),
            idle_timeout_seconds: changed!(idle_timeout_seconds, after.idle_timeout_seconds),
            owner_id: changed!(owner_id, after.owner_id.as_deref()),
            metadata: changed!(metadata, &after.metadata),
            is_active: changed!(is_active, after.is_active),
            leaked_at: changed!(leaked_at, after.leaked_at),
            leak_source: changed!(leak_source, after.leak_source.as_deref()),
            updated_at: after.updated_at,
        }
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = crate::schema::users, check_for_backend(diesel::pg::Pg))]
pub(crate) struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub password_change_required: bool,
}

impl From<&User> for UserRow {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.as_uuid(),
            email: u.email.as_str().to_owned(),
            password_hash: u.password_hash.as_phc().to_owned(),
            created_at: u.created_at,
            updated_at: u.updated_at,
            password_change_required: u.password_change_required,
        }
    }
}

impl TryFrom<UserRow> for User {
    type Error = CorruptRow;

    fn try_from(row: UserRow) -> Result<Self, Self::Error> {
        let bad = corrupt("users", row.id);
        Ok(User {
            id: UserId::from_uuid(row.id),
            email: Email::new(&row.email).map_err(|e| bad(format!("email: {e}")))?,
            password_hash: PasswordHash::from_phc(row.password_hash),
            password_change_required: row.password_change_required,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = crate::schema::memberships, check_for_backend(diesel::pg::Pg))]
pub(crate) struct MembershipRow {
    pub account_id: Uuid,
    pub user_id: Uuid,
    pub role: String,
    pub created_at: OffsetDateTime,
}

impl From<&Membership> for MembershipRow {
    fn from(m: &Membership) -> Self {
        Self {
            account_id: m.account_id.as_uuid(),
            user_id: m.user_id.as_uuid(),
            role: m.role.as_str().to_owned(),
            created_at: m.created_at,
        }
    }
}

impl TryFrom<MembershipRow> for Membership {
    type Error = CorruptRow;

    fn try_from(row: MembershipRow) -> Result<Self, Self::Error> {
        let bad = corrupt("memberships", row.user_id);
        Ok(Membership {
            user_id: UserId::from_uuid(row.user_id),
            account_id: AccountId::from_uuid(row.account_id),
            role: row.role.parse().map_err(|e| bad(format!("role: {e}")))?,
            created_at: row.created_at,
        })
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = crate::schema::invitations, check_for_backend(diesel::pg::Pg))]
pub(crate) struct InvitationRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub email: String,
    pub role: String,
    pub invited_by: String,
    pub token_hash: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

impl From<&Invitation> for InvitationRow {
    fn from(i: &Invitation) -> Self {
        Self {
            id: i.id.as_uuid(),
            account_id: i.account_id.as_uuid(),
            email: i.email.as_str().to_owned(),
            role: i.role.as_str().to_owned(),
            invited_by: i.invited_by.to_string(),
            token_hash: i.token_hash.to_vec(),
            created_at: i.created_at,
            expires_at: i.expires_at,
        }
    }
}

impl TryFrom<InvitationRow> for Invitation {
    type Error = CorruptRow;

    fn try_from(row: InvitationRow) -> Result<Self, Self::Error> {
        let bad = corrupt("invitations", row.id);
        Ok(Invitation {
            id: keyward_domain::InvitationId::from_uuid(row.id),
            account_id: AccountId::from_uuid(row.account_id),
            email: Email::new(&row.email).map_err(|e| bad(format!("email: {e}")))?,
            role: row.role.parse().map_err(|_| bad(format!("role: {}", row.role)))?,
            invited_by: row.invited_by.parse().map_err(|e| bad(format!("invited_by: {e}")))?,
            token_hash: row.token_hash.as_slice().try_into().map_err(|_| bad("token_hash: not 32 bytes".into()))?,
            created_at: row.created_at,
            expires_at: row.expires_at,
        })
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = crate::schema::sessions, check_for_backend(diesel::pg::Pg))]
pub(crate) struct SessionRow {
    pub id: Uuid,
    pub token_hash: Vec<u8>,
    pub user_id: Uuid,
    pub account_id: Option<Uuid>,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    pub step_up_at: Option<OffsetDateTime>,
    pub temporary_key_id: Option<Uuid>,
    pub password_change_required: bool,
}

impl From<&Session> for SessionRow {
    fn from(s: &Session) -> Self {
        Self {
            id: s.id.as_uuid(),
            token_hash: s.token_hash.to_vec(),
            user_id: s.user_id.as_uuid(),
            account_id: s.account_id.map(|a| a.as_uuid()),
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            step_up_at: s.step_up_at,
            temporary_key_id: s.temporary_key_id.map(|id| id.as_uuid()),
            password_change_required: s.password_change_required,
        }
    }
}

impl TryFrom<SessionRow> for Session {
    type Error = CorruptRow;

    fn try_from(row: SessionRow) -> Result<Self, Self::Error> {
        let bad = corrupt("sessions", row.id);
        Ok(Session {
            id: SessionId::from_uuid(row.id),
            token_hash: row.token_hash.as_slice().try_into().map_err(|_| bad("token_hash: not 32 bytes".into()))?,
            user_id: UserId::from_uuid(row.user_id),
            account_id: row.account_id.map(AccountId::from_uuid),
            created_at: row.created_at,
            last_seen_at: row.last_seen_at,
            step_up_at: row.step_up_at,
            temporary_key_id: row.temporary_key_id.map(KeyId::from_uuid),
            password_change_required: row.password_change_required,
        })
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = crate::schema::audit_events, check_for_backend(diesel::pg::Pg))]
pub(crate) struct AuditRow {
    pub id: Uuid,
    pub account_id: Option<Uuid>,
    pub seq: i64,
    pub ts: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub result: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub metadata: serde_json::Value,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

impl From<&AuditRecord> for AuditRow {
    fn from(r: &AuditRecord) -> Self {
        let e = &r.event;
        Self {
            id: e.id.as_uuid(),
            account_id: e.account_id.map(|a| a.as_uuid()),
            seq: r.seq,
            ts: e.ts,
            actor: e.actor.to_string(),
            action: e.action.to_string(),
            resource_type: e.resource_type.to_string(),
            resource_id: e.resource_id.clone(),
            result: e.result.as_str().to_owned(),
            ip: e.context.ip.map(|ip| ip.to_string()),
            user_agent: e.context.user_agent.clone(),
            request_id: e.context.request_id.map(|r| r.to_string()),
            metadata: serde_json::Value::Object(e.metadata.clone()),
            prev_hash: r.prev_hash.to_vec(),
            hash: r.hash.to_vec(),
        }
    }
}

impl TryFrom<AuditRow> for AuditRecord {
    type Error = CorruptRow;

    fn try_from(row: AuditRow) -> Result<Self, Self::Error> {
        let bad = corrupt("audit_events", row.id);
        let hash32 = |bytes: &[u8], field: &str| -> Result<[u8; 32], CorruptRow> {
            bytes.try_into().map_err(|_| bad(format!("{field}: not 32 bytes")))
        };
        Ok(AuditRecord {
            prev_hash: hash32(&row.prev_hash, "prev_hash")?,
            hash: hash32(&row.hash, "hash")?,
            seq: row.seq,
            event: AuditEvent {
                id: EventId::from_uuid(row.id),
                ts: row.ts,
                account_id: row.account_id.map(AccountId::from_uuid),
                actor: row.actor.parse().map_err(|e| bad(format!("actor: {e}")))?,
                action: row.action.into(),
                resource_type: row.resource_type.into(),
                resource_id: row.resource_id,
                result: row.result.parse().map_err(|e| bad(format!("result: {e}")))?,
                context: RequestContext {
                    ip: row.ip.map(|ip| ip.parse()).transpose().map_err(|_| bad("ip: not an address".into()))?,
                    user_agent: row.user_agent,
                    request_id: row.request_id.map(|r| r.parse()).transpose().map_err(|_| bad("request_id".into()))?,
                },
                metadata: match row.metadata {
                    serde_json::Value::Object(map) => map,
                    _ => return Err(bad("metadata: not an object".into())),
                },
            },
        })
    }
}
