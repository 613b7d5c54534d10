//! Plans (what an account may do) and tiers (how fast a service key may be used), as data:
//! the defaults of SPEC §2, all replaceable from configuration.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    Free,
    Basic,
    Pro,
    Enterprise,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Free,
    Basic,
    Pro,
    Enterprise,
}

macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = $crate::plan::UnknownVariant;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    _ => Err($crate::plan::UnknownVariant { expected: concat!($("\"", $text, "\" "),+) }),
                }
            }
        }
    };
}
pub(crate) use text_enum;

/// A string that names no variant of a closed set; says which values are accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be one of {expected}")]
pub struct UnknownVariant {
    pub expected: &'static str,
}

text_enum!(Plan { Free => "free", Basic => "basic", Pro => "pro", Enterprise => "enterprise" });
text_enum!(Tier { Free => "free", Basic => "basic", Pro => "pro", Enterprise => "enterprise" });

/// What a plan allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanLimits {
    /// Maximum number of keys that are not revoked; `None` is unlimited.
    pub max_keys: Option<u64>,
    pub audit_retention_days: u32,
    pub account_keys_allowed: bool,
    pub default_tier: Tier,
}

/// The limits of every plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlanTable {
    pub free: PlanLimits,
    pub basic: PlanLimits,
    pub pro: PlanLimits,
    pub enterprise: PlanLimits,
}

impl Default for PlanTable {
    fn default() -> Self {
        Self {
            free: PlanLimits {
                max_keys: Some(100),
                audit_retention_days: 30,
                account_keys_allowed: false,
                default_tier: Tier::Free,
            },
            basic: PlanLimits {
                max_keys: Some(1_000),
                audit_retention_days: 90,
                account_keys_allowed: false,
                default_tier: Tier::Basic,
            },
            pro: PlanLimits {
                max_keys: Some(10_000),
                audit_retention_days: 365,
                account_keys_allowed: true,
                default_tier: Tier::Pro,
            },
            enterprise: PlanLimits {
                max_keys: None,
                audit_retention_days: 730,
                account_keys_allowed: true,
                default_tier: Tier::Enterprise,
            },
        }
    }
}

impl PlanTable {
    pub fn limits(&self, plan: Plan) -> &PlanLimits {
        match plan {
            Plan::Free => &self.free,
            Plan::Basic => &self.basic,
            Plan::Pro => &self.pro,
            Plan::Enterprise => &self.enterprise,
        }
    }
}

/// Requests per minute of each tier (used by the rate limiter, issue #4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierTable {
    pub free: u64,
    pub basic: u64,
    pub pro: u64,
    pub enterprise: u64,
}

impl Default for TierTable {
    fn default() -> Self {
        Self { free: 10, basic: 100, pro: 1_000, enterprise: 10_000 }
    }
}

impl TierTable {
    pub fn per_minute(&self, tier: Tier) -> u64 {
        match tier {
            Tier::Free => self.free,
            Tier::Basic => self.basic,
            Tier::Pro => self.pro,
            Tier::Enterprise => self.enterprise,
        }
    }
}
