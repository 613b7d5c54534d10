//! Conformance: the mail outbox (claims, leases, outcomes, the backlog) and password resets.

use super::*;
use crate::{
    id::{MailId, ResetId, UserId},
    mail::{Mail, MailBacklog, MailOutcome},
    people::Email,
    ports::PasswordReset,
};

fn mail(seed: u64, account: Option<AccountId>, at: OffsetDateTime) -> Mail {
    Mail {
        id: MailId::generate(at, &SeededRandom::new(seed)),
        account_id: account,
        to: Email::new("ada@acme.io").unwrap(),
        subject: format!("mail {seed}"),
        text: format!("link {seed}"),
        html: format!("<p>link {seed}</p>"),
        created_at: at,
    }
}

pub async fn the_outbox_hands_each_due_mail_to_one_claim_and_keeps_its_outcome<S: Store>(store: S) {
    let f = fixture(store, Plan::Pro).await;
    let store = f.service.store();
    let account = f.principal.account_id;
    let (first, second, later) = (
        mail(1, Some(account), START),
        mail(2, None, START + Duration::seconds(1)),
        mail(3, None, START + Duration::hours(1)),
    );
    for m in [&first, &second, &later] {
        store.enqueue_mail(m).await.unwrap();
    }
    assert_eq!(store.mail_backlog().await.unwrap(), MailBacklog { pending: 3, delayed: 0, failed: 0 });
    let now = START + Duration::seconds(5);
    let claimed = store.claim_mail(now, now + Duration::seconds(60), 10).await.unwrap();
    let ids: Vec<_> = claimed.iter().map(|q| q.mail.id).collect();
    assert_eq!(ids, vec![first.id, second.id], "due ones only, earliest first");
    assert_eq!(claimed[0].mail, first);
    assert_eq!(claimed[0].attempts, 0);
    // Claimed: nobody else gets them until the lease ends.
    assert!(store.claim_mail(now, now + Duration::seconds(60), 10).await.unwrap().is_empty());
    let lapsed = store.claim_mail(now + Duration::seconds(61), now + Duration::seconds(120), 1).await.unwrap();
    assert_eq!(lapsed.iter().map(|q| q.mail.id).collect::<Vec<_>>(), vec![first.id], "a dead worker's claim lapses");

    store.settle_mail(first.id, &MailOutcome::Sent { at: now }).await.unwrap();
    let retry_at = now + Duration::seconds(5);
    store
        .settle_mail(second.id, &MailOutcome::Failed { error: "refused".into(), next_at: Some(retry_at) })
        .await
        .unwrap();
    assert_eq!(store.mail_backlog().await.unwrap(), MailBacklog { pending: 2, delayed: 1, failed: 0 });
    let pending = store.pending_mail_of(account).await.unwrap();
    assert!(pending.is_empty(), "the account's mail was sent: {pending:?}");
    let again = store.claim_mail(retry_at, retry_at + Duration::seconds(60), 10).await.unwrap();
    assert_eq!((again.len(), again[0].mail.id, again[0].attempts), (1, second.id, 1));
    store.settle_mail(second.id, &MailOutcome::Failed { error: "refused".into(), next_at: None }).await.unwrap();
    assert_eq!(store.mail_backlog().await.unwrap(), MailBacklog { pending: 1, delayed: 0, failed: 1 });
    assert!(
        store
            .claim_mail(START + Duration::days(9), START + Duration::days(10), 10)
            .await
            .unwrap()
            .iter()
            .all(|q| q.mail.id == later.id)
    );

    // An account's unsent mail is listed for it, with its tries.
    let stuck = mail(4, Some(account), START);
    store.enqueue_mail(&stuck).await.unwrap();
    assert_eq!(store.pending_mail_of(account).await.unwrap(), vec![(stuck, 0)]);
}

pub async fn a_reset_is_used_once_and_replaced_by_a_newer_one<S: Store>(store: S) {
    use crate::people::Role;
    let f = fixture(store, Plan::Pro).await;
    let store = f.service.store();
    let ada = crate::people::User {
        id: UserId::generate(START, &SeededRandom::new(61)),
        email: Email::new("ada@acme.io").unwrap(),
        password_hash: crate::password::PasswordHash::from_phc("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        password_change_required: false,
        created_at: START,
        updated_at: START,
    };
    let membership = crate::people::Membership {
        user_id: ada.id,
        account_id: f.principal.account_id,
        role: Role::Owner,
        created_at: START,
    };
    store.create_user(&ada, Some(&membership)).await.unwrap();
    let reset = |seed: u64, hash: u8| PasswordReset {
        id: ResetId::generate(START, &SeededRandom::new(seed)),
        user_id: ada.id,
        token_hash: [hash; 32],
        created_at: START,
        expires_at: START + Duration::hours(1),
    };
    store.insert_reset(&reset(70, 1)).await.unwrap();
    store.insert_reset(&reset(71, 2)).await.unwrap();
    assert_eq!(store.take_reset(&[1; 32]).await.unwrap(), None, "the older link is dead");
    assert_eq!(store.take_reset(&[2; 32]).await.unwrap(), Some(reset(71, 2)));
    assert_eq!(store.take_reset(&[2; 32]).await.unwrap(), None, "used once");
}
