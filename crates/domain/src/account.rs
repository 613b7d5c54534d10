//! Accounts: the tenants. Everything else belongs to exactly one.

use time::OffsetDateTime;

use crate::{id::AccountId, plan::Plan};

pub const MAX_ACCOUNT_NAME_LEN: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    pub plan: Plan,
    pub created_at: OffsetDateTime,
}
