//! Typed identifiers: `acct_…`, `ks_…`, `key_…`, `evt_…`, `req_…`, `usr_…`, `ses_…`, `inv_…`, and
//! for webhooks `wh_…`, `msg_…`, `att_…`.
//!
//! Each is a UUIDv7 (time-ordered, so ids sort by creation and B-tree inserts stay local)
//! written as its prefix and 22 base62 characters. A `KeyId` can never be passed where an
//! `AccountId` is expected.

use std::{fmt, str::FromStr};

use time::OffsetDateTime;
use uuid::Uuid;

use crate::random::RandomSource;

const ENCODED_LEN: usize = 22;

/// A UUIDv7 from an injected clock reading and random source.
fn uuid_v7(now: OffsetDateTime, rng: &dyn RandomSource) -> Uuid {
    let millis = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let mut random = [0u8; 10];
    rng.fill(&mut random);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {expected} id")]
pub struct ParseIdError {
    expected: &'static str,
}

macro_rules! typed_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate(now: OffsetDateTime, rng: &dyn RandomSource) -> Self {
                Self(uuid_v7(now, rng))
            }

            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Into a buffer on the stack: ids are written into every answer of the
                // verification hot path, where an allocation per id shows.
                let mut digits = [b'0'; ENCODED_LEN];
                let written = base62::encode_bytes(self.0.as_u128(), &mut digits).unwrap_or(0);
                // Left-padded with zeros to the fixed width.
                digits.rotate_left(written);
                f.write_str($prefix)?;
                f.write_str("_")?;
                f.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let error = ParseIdError { expected: $prefix };
                let encoded = s
                    .strip_prefix($prefix)
                    .and_then(|rest| rest.strip_prefix('_'))
                    .filter(|rest| rest.len() == ENCODED_LEN)
                    .ok_or(error.clone())?;
                let value = base62::decode(encoded).map_err(|_| error)?;
                Ok(Self(Uuid::from_u128(value)))
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

typed_id!(
    /// An account (tenant).
    AccountId, "acct"
);
typed_id!(
    /// A keyspace: a named group of service keys with its own prefix.
    KeyspaceId, "ks"
);
typed_id!(
    /// A key of any kind.
    KeyId, "key"
);
typed_id!(
    /// An audit event.
    EventId, "evt"
);
typed_id!(
    /// One HTTP request, echoed in `X-Request-Id` and in error envelopes.
    RequestId, "req"
);
typed_id!(
    /// A person who logs in.
    UserId, "usr"
);
typed_id!(
    /// A login session (the cookie holds a separate secret token, not this id).
    SessionId, "ses"
);
typed_id!(
    /// An invitation to join an account (its link holds a separate secret token).
    InvitationId, "inv"
);
typed_id!(
    /// A mail in the outbox.
    MailId, "mail"
);
typed_id!(
    /// A password reset (its link holds a separate secret token).
    ResetId, "rst"
);
typed_id!(
    /// A webhook endpoint.
    WebhookId, "wh"
);
typed_id!(
    /// A webhook message: the `webhook-id` of every delivery of one event.
    MessageId, "msg"
);
typed_id!(
    /// One try at delivering a webhook message.
    AttemptId, "att"
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;

    #[test]
    fn ids_round_trip_and_reject_other_prefixes() {
        let rng = SeededRandom::new(7);
        let id = KeyId::generate(OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000), &rng);
        let text = id.to_string();
        assert!(text.starts_with("key_"));
        assert_eq!(text.len(), 4 + ENCODED_LEN);
        assert_eq!(text.parse::<KeyId>().unwrap(), id);
        assert!(text.parse::<AccountId>().is_err());
        assert!("key_".parse::<KeyId>().is_err());
        assert!("key_!!!!!!!!!!!!!!!!!!!!!!".parse::<KeyId>().is_err());
    }

    #[test]
    fn ids_are_zero_padded_to_a_fixed_width() {
        for value in [0, 1, 61, 62, u128::from(u64::MAX), u128::MAX] {
            let text = KeyId::from_uuid(Uuid::from_u128(value)).to_string();
            assert_eq!(text, format!("key_{:0>22}", base62::encode(value)), "{value}");
            assert_eq!(text.parse::<KeyId>().unwrap().as_uuid().as_u128(), value);
        }
        assert_eq!(KeyId::from_uuid(Uuid::from_u128(61)).to_string(), format!("key_{}z", "0".repeat(21)));
    }

    #[test]
    fn ids_sort_by_creation_time() {
        let rng = SeededRandom::new(1);
        let t = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let earlier = KeyId::generate(t, &rng);
        let later = KeyId::generate(t + time::Duration::milliseconds(1), &rng);
        assert!(earlier < later);
        assert!(earlier.to_string() < later.to_string(), "text order follows time order");
    }
}
