//! What an audit event says happened: one enum, so the actions a trail can hold are listed
//! in one place, and the resource type each one concerns is decided with it.

/// Declares [`Action`] from one table: each action's wire name and its resource type.
macro_rules! actions {
    ($($(#[$doc:meta])* $variant:ident => ($name:literal, $resource:literal),)+) => {
        /// An audited action. Its wire name (`key.create`) is what storage keeps and
        /// `GET /v1/audit?action=` filters on.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Action {
            $($(#[$doc])* $variant,)+
        }

        impl Action {
            pub const ALL: &[Self] = &[$(Self::$variant,)+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }

            /// The kind of object the action concerns (`key`, `user`, `session`, …).
            pub const fn resource_type(self) -> &'static str {
                match self {
                    $(Self::$variant => $resource,)+
                }
            }

            pub fn parse(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|a| a.as_str() == name)
            }
        }
    };
}

actions! {
    AccountRead => ("account.read", "account"),
    KeyspaceList => ("keyspace.list", "keyspace"),
    KeyspaceCreate => ("keyspace.create", "keyspace"),
    KeyspaceRead => ("keyspace.read", "keyspace"),
    KeyspaceUpdate => ("keyspace.update", "keyspace"),
    KeyspaceDelete => ("keyspace.delete", "keyspace"),
    /// A keyspace's route rules for gateways read (`GET /v1/keyspaces/{id}/routes`).
    KeyspaceRoutesRead => ("keyspace.routes_read", "keyspace"),
    /// A keyspace's route rules replaced.
    KeyspaceRoutesUpdate => ("keyspace.routes_update", "keyspace"),
    KeyList => ("key.list", "key"),
    KeyCreate => ("key.create", "key"),
    KeyImport => ("key.import", "key"),
    KeyRead => ("key.read", "key"),
    KeyUpdate => ("key.update", "key"),
    KeyRevoke => ("key.revoke", "key"),
    KeyRotate => ("key.rotate", "key"),
    /// A key reported found in public, handled by its keyspace's leak policy.
    KeyLeak => ("key.leak", "key"),
    /// A key revoked by whoever held it (`POST /v1/keys/self/revoke`).
    KeySelfRevoke => ("key.self_revoke", "key"),
    Login => ("auth.login", "session"),
    LoginFailed => ("auth.login_failed", "user"),
    Logout => ("auth.logout", "session"),
    SessionRead => ("auth.session", "session"),
    VerifyPassword => ("auth.verify_password", "user"),
    PasswordChange => ("auth.password_change", "user"),
    /// A reset's link asked for (mailed when the address has a login and a mailer is set).
    PasswordResetRequest => ("auth.password_reset_request", "user"),
    PasswordReset => ("auth.password_reset", "user"),
    InvitationList => ("user.invitation_list", "user"),
    /// Someone holding an invitation's link looked at it.
    InvitationRead => ("user.invitation_read", "invitation"),
    InvitationAccept => ("user.invitation_accept", "invitation"),
    InvitationDecline => ("user.invitation_decline", "invitation"),
    SentInvitationList => ("user.invitation_sent_list", "user"),
    InvitationWithdraw => ("user.invitation_withdraw", "invitation"),
    UserList => ("user.list", "user"),
    UserCreate => ("user.create", "user"),
    UserInvite => ("user.invite", "invitation"),
    UserUpdate => ("user.update", "user"),
    UserRemove => ("user.remove", "user"),
    AccountKeyList => ("account_key.list", "key"),
    AccountKeyCreate => ("account_key.create", "key"),
    AccountKeyRead => ("account_key.read", "key"),
    AccountKeyUpdate => ("account_key.update", "key"),
    AccountKeyRevoke => ("account_key.revoke", "key"),
    AccountKeyRotate => ("account_key.rotate", "key"),
    AuditList => ("audit.list", "audit"),
    UsageRead => ("usage.read", "key"),
    StatsRead => ("stats.read", "account"),
    WebhookList => ("webhook.list", "webhook"),
    WebhookCreate => ("webhook.create", "webhook"),
    WebhookRead => ("webhook.read", "webhook"),
    WebhookUpdate => ("webhook.update", "webhook"),
    WebhookDelete => ("webhook.delete", "webhook"),
    WebhookRotateSecret => ("webhook.rotate_secret", "webhook"),
    WebhookAttemptList => ("webhook.attempt_list", "webhook"),
    WebhookRetry => ("webhook.retry", "webhook"),
    /// An endpoint turned off by Keyward after failing every delivery for days.
    WebhookDisable => ("webhook.disable", "webhook"),
    /// A management call that matched no route (`/v1/…` typos, probes).
    Request => ("request", "route"),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_parse_back() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(*action));
        }
        let mut names: Vec<_> = Action::ALL.iter().map(|a| a.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Action::ALL.len());
    }
}
