//! Conformance: users, memberships, invitations, sessions.

use super::*;

fn user(email: &str, seed: u64) -> crate::people::User {
    crate::people::User {
        id: crate::id::UserId::generate(START, &SeededRandom::new(seed)),
        email: crate::people::Email::new(email).unwrap(),
        password_hash: crate::password::PasswordHash::from_phc("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        password_change_required: false,
        created_at: START,
        updated_at: START,
    }
}

fn member(user: &crate::people::User, account: AccountId, role: crate::people::Role) -> crate::people::Membership {
    crate::people::Membership { user_id: user.id, account_id: account, role, created_at: START }
}

fn session(user: &crate::people::User, account: AccountId, seed: u64) -> crate::people::Session {
    crate::people::Session {
        id: crate::id::SessionId::generate(START, &SeededRandom::new(seed)),
        token_hash: [u8::try_from(seed % 256).unwrap(); 32],
        user_id: user.id,
        account_id: Some(account),
        created_at: START,
        last_seen_at: START,
        step_up_at: None,
        temporary_key_id: None,
        password_change_required: false,
    }
}

pub async fn users_are_unique_by_email<S: Store>(store: S) {
    use crate::ports::CreateUserError;
    let f = fixture(store, Plan::Pro).await;
    let store = f.service.store();
    let ada = user("ada@acme.io", 1);
    store.create_user(&ada, Some(&member(&ada, f.principal.account_id, crate::people::Role::Owner))).await.unwrap();
    let again = user("ada@acme.io", 2);
    assert!(matches!(store.create_user(&again, None).await, Err(CreateUserError::DuplicateEmail)));
    let found = store.find_user_by_email(&ada.email).await.unwrap().unwrap();
    assert_eq!(found, ada);
    let memberships = store.memberships_of(ada.id).await.unwrap();
    assert_eq!(memberships.len(), 1);
    assert_eq!(memberships[0].1, "Acme");
    assert_eq!(store.members(f.principal.account_id).await.unwrap()[0].0.email, ada.email);
    let rehash = crate::password::PasswordHash::from_phc("$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaA".into());
    store.set_password_hash(ada.id, &rehash, true, START + Duration::seconds(1)).await.unwrap();
    let stored = store.get_user(ada.id).await.unwrap().unwrap();
    assert_eq!((stored.password_hash, stored.password_change_required), (rehash.clone(), true));
    store.set_password_hash(ada.id, &rehash, false, START + Duration::seconds(2)).await.unwrap();
    assert!(!store.get_user(ada.id).await.unwrap().unwrap().password_change_required);
}

/// An invitation becomes a membership only when the invited user answers it.
pub async fn invitations_are_found_by_token_and_used_once<S: Store>(store: S) {
    use crate::{
        id::InvitationId,
        key::Actor,
        people::{Email, Invitation, Role},
        ports::MembershipError,
    };
    let a = fixture(store.clone(), Plan::Pro).await;
    let b = fixture(store, Plan::Pro).await;
    let store = a.service.store();
    let ada = user("ada@acme.io", 31);
    store.create_user(&ada, Some(&member(&ada, b.principal.account_id, Role::Owner))).await.unwrap();
    let inviter = user("boss@acme.io", 33);
    store.create_user(&inviter, Some(&member(&inviter, a.principal.account_id, Role::Owner))).await.unwrap();
    let invitation = Invitation {
        id: InvitationId::generate(START, &SeededRandom::new(40)),
        account_id: a.principal.account_id,
        email: ada.email.clone(),
        role: Role::Admin,
        invited_by: Actor::User(inviter.id),
        token_hash: [1; 32],
        created_at: START,
        expires_at: START + Duration::days(7),
    };
    store.invite(&invitation).await.unwrap();
    // Inviting the address again replaces the offer, its token included.
    let again = Invitation {
        id: InvitationId::generate(START, &SeededRandom::new(41)),
        role: Role::Viewer,
        token_hash: [2; 32],
        ..invitation.clone()
    };
    store.invite(&again).await.unwrap();
    assert!(store.find_invitation(&[1; 32]).await.unwrap().is_none(), "the replaced link is dead");
    assert_eq!(store.find_invitation(&[2; 32]).await.unwrap(), Some((again.clone(), "Acme".to_owned())));
    assert!(store.get_membership(a.principal.account_id, ada.id).await.unwrap().is_none(), "no membership yet");
    assert_eq!(store.invitations_to(&ada.email).await.unwrap(), vec![(again.clone(), "Acme".to_owned())]);
    assert_eq!(store.invitations_from(a.principal.account_id).await.unwrap(), vec![again.clone()]);
    assert!(store.invitations_from(b.principal.account_id).await.unwrap().is_empty());

    // Taken once; the second take finds nothing.
    assert_eq!(store.take_invitation(again.id).await.unwrap(), Some(again.clone()));
    assert_eq!(store.take_invitation(again.id).await.unwrap(), None);
    assert!(store.find_invitation(&[2; 32]).await.unwrap().is_none());
    assert!(store.invitations_from(a.principal.account_id).await.unwrap().is_empty());

    // An address that has no login yet is invited all the same; a member's is refused.
    let stranger = Invitation {
        id: InvitationId::generate(START, &SeededRandom::new(42)),
        email: Email::new("new@acme.io").unwrap(),
        token_hash: [3; 32],
        ..invitation.clone()
    };
    store.invite(&stranger).await.unwrap();
    let bosss = Invitation {
        id: InvitationId::generate(START, &SeededRandom::new(43)),
        email: inviter.email.clone(),
        token_hash: [4; 32],
        ..invitation.clone()
    };
    assert!(matches!(store.invite(&bosss).await, Err(MembershipError::Duplicate)));
    // Withdrawing by inviter takes theirs only.
    let by_key = Invitation {
        id: InvitationId::generate(START, &SeededRandom::new(44)),
        email: Email::new("other@acme.io").unwrap(),
        token_hash: [5; 32],
        invited_by: a.principal.actor(),
        ..invitation.clone()
    };
    store.invite(&by_key).await.unwrap();
    let withdrawn = store.withdraw_invitations_by(a.principal.account_id, &Actor::User(inviter.id)).await.unwrap();
    assert_eq!(withdrawn, vec![stranger]);
    assert_eq!(store.invitations_from(a.principal.account_id).await.unwrap(), vec![by_key]);
}

pub async fn the_last_owner_stays<S: Store>(store: S) {
    use crate::{people::Role, ports::MembershipError};
    let f = fixture(store, Plan::Pro).await;
    let store = f.service.store();
    let account = f.principal.account_id;
    let (a, b) = (user("a@acme.io", 1), user("b@acme.io", 2));
    store.create_user(&a, Some(&member(&a, account, Role::Owner))).await.unwrap();
    store.create_user(&b, Some(&member(&b, account, Role::Admin))).await.unwrap();
    assert!(matches!(store.set_role(account, a.id, Role::Admin).await, Err(MembershipError::LastOwner)));
    assert!(matches!(store.remove_membership(account, a.id).await, Err(MembershipError::LastOwner)));
    store.set_role(account, b.id, Role::Owner).await.unwrap();
    store.set_role(account, a.id, Role::Viewer).await.unwrap();
    assert_eq!(store.get_membership(account, a.id).await.unwrap().unwrap().role, Role::Viewer);
    assert!(matches!(store.remove_membership(account, b.id).await, Err(MembershipError::LastOwner)));
    assert!(matches!(store.add_membership(&member(&a, account, Role::Member)).await, Err(MembershipError::Duplicate)));
    let stranger = user("c@acme.io", 3);
    assert!(matches!(store.set_role(account, stranger.id, Role::Owner).await, Err(MembershipError::NotFound)));
}

pub async fn removing_a_member_ends_their_sessions<S: Store>(store: S) {
    use crate::people::Role;
    let f = fixture(store, Plan::Pro).await;
    let store = f.service.store();
    let account = f.principal.account_id;
    let (owner, leaver) = (user("o@acme.io", 1), user("l@acme.io", 2));
    store.create_user(&owner, Some(&member(&owner, account, Role::Owner))).await.unwrap();
    store.create_user(&leaver, Some(&member(&leaver, account, Role::Member))).await.unwrap();
    let (kept, ended) = (session(&owner, account, 10), session(&leaver, account, 11));
    store.insert_session(&kept).await.unwrap();
    store.insert_session(&ended).await.unwrap();
    store.remove_membership(account, leaver.id).await.unwrap();
    assert!(store.find_session(&ended.token_hash).await.unwrap().is_none());
    assert!(store.find_session(&kept.token_hash).await.unwrap().is_some());
    assert!(store.get_membership(account, leaver.id).await.unwrap().is_none());
}

pub async fn a_users_sessions_end_together_but_the_one_kept<S: Store>(store: S) {
    use crate::people::Role;
    let f = fixture(store, Plan::Pro).await;
    let store = f.service.store();
    let account = f.principal.account_id;
    let (ada, bob) = (user("ada@acme.io", 1), user("bob@acme.io", 2));
    store.create_user(&ada, Some(&member(&ada, account, Role::Owner))).await.unwrap();
    store.create_user(&bob, Some(&member(&bob, account, Role::Member))).await.unwrap();
    let (kept, first, second, other) = (
        session(&ada, account, 10),
        session(&ada, account, 11),
        session(&ada, account, 12),
        session(&bob, account, 13),
    );
    for s in [&kept, &first, &second, &other] {
        store.insert_session(s).await.unwrap();
    }
    assert_eq!(store.delete_sessions_of_user(ada.id, Some(kept.id)).await.unwrap(), 2);
    assert!(store.find_session(&first.token_hash).await.unwrap().is_none());
    assert!(store.find_session(&second.token_hash).await.unwrap().is_none());
    assert!(store.find_session(&kept.token_hash).await.unwrap().is_some(), "the one kept");
    assert!(store.find_session(&other.token_hash).await.unwrap().is_some(), "another user's");
    assert_eq!(store.delete_sessions_of_user(ada.id, None).await.unwrap(), 1);
    assert!(store.find_session(&kept.token_hash).await.unwrap().is_none());
}

pub async fn sessions_round_trip<S: Store>(store: S) {
    use crate::people::Role;
    let f = fixture(store, Plan::Pro).await;
    let store = f.service.store();
    let account = f.principal.account_id;
    let ada = user("ada@acme.io", 1);
    store.create_user(&ada, Some(&member(&ada, account, Role::Owner))).await.unwrap();
    let mut s = session(&ada, account, 7);
    s.temporary_key_id = Some(f.principal.actor().to_string().parse().unwrap());
    store.insert_session(&s).await.unwrap();
    assert_eq!(store.find_session(&s.token_hash).await.unwrap().unwrap(), s);
    store.touch_session(s.id, START + Duration::minutes(10)).await.unwrap();
    store.touch_session(s.id, START + Duration::minutes(5)).await.unwrap();
    store.set_step_up(s.id, START + Duration::minutes(10)).await.unwrap();
    let stored = store.find_session(&s.token_hash).await.unwrap().unwrap();
    assert_eq!(stored.last_seen_at, START + Duration::minutes(10), "last_seen_at only moves forward");
    assert_eq!(stored.step_up_at, Some(START + Duration::minutes(10)));
    assert_eq!(store.delete_session(s.id).await.unwrap().map(|d| d.id), Some(s.id));
    assert!(store.find_session(&s.token_hash).await.unwrap().is_none());
    assert!(store.delete_session(s.id).await.unwrap().is_none());
}

pub async fn touching_a_key_only_moves_forward<S: Store>(store: S) {
    let f = fixture(store, Plan::Pro).await;
    let store = f.service.store();
    let key: KeyId = f.principal.actor().to_string().parse().unwrap();
    store.touch_key(key, START + Duration::hours(2)).await.unwrap();
    store.touch_key(key, START + Duration::hours(1)).await.unwrap();
    let stored = store.get_key(f.principal.account_id, key).await.unwrap().unwrap();
    assert_eq!(stored.last_used_at, Some(START + Duration::hours(2)));
    let listed = store.list_account_keys(f.principal.account_id).await.unwrap();
    assert_eq!(listed.iter().map(|k| k.id).collect::<Vec<_>>(), vec![key]);
    assert_eq!(store.count_account_keys(f.principal.account_id, START).await.unwrap(), 1);
}
