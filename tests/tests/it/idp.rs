//! A workspace's identity provider on DynamoDB Local: who holds an (issuer, audience) pair and an
//! identifier, and a signal's `jti` recorded with the revocation it caused, at once or not at all,
//! under concurrent calls.

use active_sessions::domain::{ClientKind, Role, UserId, WorkspaceId};
use active_sessions::egress::Egress;
use active_sessions::identity::{IdentityProvider, SubjectFormat, UserIdentifier};
use active_sessions::model::{Actor, Revocation, RevokeReason, Watermark};
use active_sessions::service::{self, SignalOutcome, UserProfileInput};
use active_sessions::store::{DirectoryStore, Once, SessionsStore, StoreError};
use active_sessions::testing::sign_in;
use active_sessions::{Policy, ServiceError};
use integration_tests::{s, TestTable};
use serde_json::json;

const ISS: &str = "https://idp.example";

fn provider(ws: &str, aud: &str) -> IdentityProvider {
    IdentityProvider {
        workspace_id: WorkspaceId::parse(ws).unwrap(),
        issuer: ISS.into(),
        jwks_url: "https://idp.example/keys".into(),
        audience: aud.into(),
        subject_format: SubjectFormat::Email,
        updated_at: 0,
    }
}

async fn member(t: &TestTable, user: &str, ws: &str, email: &str) -> Result<(), ServiceError> {
    let input: UserProfileInput =
        serde_json::from_value(json!({"workspace_id": ws, "role": Role::Member, "email": email})).unwrap();
    service::put_user(&t.store, &UserId::parse(user).unwrap(), input).await.map(|_| ())
}

fn once(jti: &str) -> Once {
    Once {
        workspace: WorkspaceId::parse("acme").unwrap(),
        issuer: ISS.into(),
        jti: jti.into(),
        keep_until_secs: service::now_ms() / 1000 + 600,
    }
}

fn email(e: &str) -> Vec<UserIdentifier> {
    vec![UserIdentifier::email(e).unwrap()]
}

#[tokio::test]
async fn a_pair_has_one_workspace_even_when_two_claim_it_at_once() {
    let t = TestTable::new().await;
    let (acme, globex) = (provider("acme", "shared-aud"), provider("globex", "shared-aud"));
    let (a, b) = tokio::join!(t.store.put_identity_provider(&acme), t.store.put_identity_provider(&globex));
    let won = [&a, &b].iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "{a:?} {b:?}");
    assert!([a, b].into_iter().any(|r| matches!(r, Err(StoreError::Taken(_)) | Err(StoreError::Conflict))));
    let holders = t.items().await.into_iter().filter(|i| s(i, "PK").starts_with("IDPPAIR#")).count();
    assert_eq!(holders, 1);
    // The winner moves to another audience: the pair is free for the other.
    let (winner, loser) = match t.store.identity_provider(&WorkspaceId::parse("acme").unwrap()).await.unwrap() {
        Some(_) => ("acme", "globex"),
        None => ("globex", "acme"),
    };
    t.store.put_identity_provider(&provider(winner, "own-aud")).await.unwrap();
    t.store.put_identity_provider(&provider(loser, "shared-aud")).await.unwrap();
    let pairs = t.items().await.into_iter().filter(|i| s(i, "PK").starts_with("IDPPAIR#")).count();
    assert_eq!(pairs, 2, "the old pair is released, not left behind");
}

#[tokio::test]
async fn an_identifier_names_one_member_of_a_workspace_and_follows_them() {
    let t = TestTable::new().await;
    let acme = WorkspaceId::parse("acme").unwrap();
    let find = |addr: &'static str| {
        let (t, acme) = (&t, acme.clone());
        async move { t.store.user_by_identifier(&acme, &email(addr)[0]).await.unwrap().map(|u| u.to_string()) }
    };
    let (a, b) = tokio::join!(
        member(&t, "ann", "acme", "shared@acme.example"),
        member(&t, "amy", "acme", "Shared@Acme.example"),
    );
    assert_eq!([&a, &b].iter().filter(|r| r.is_ok()).count(), 1, "{a:?} {b:?}");
    let owner = find("SHARED@acme.example").await.unwrap();
    let other = if owner == "ann" { "amy" } else { "ann" };
    // A user of another workspace may hold the same address there: it takes nothing from acme's.
    member(&t, "eve", "globex", "shared@acme.example").await.unwrap();
    assert_eq!(find("shared@acme.example").await.as_deref(), Some(owner.as_str()));
    // The owner changes address: the old one is free, and found no more.
    member(&t, &owner, "acme", "new@acme.example").await.unwrap();
    assert_eq!(find("shared@acme.example").await, None);
    member(&t, other, "acme", "shared@acme.example").await.unwrap();
    assert_eq!(find("shared@acme.example").await.as_deref(), Some(other));
    // Moving to another workspace takes the claim along; leaving the address out removes it.
    member(&t, other, "initech", "shared@acme.example").await.unwrap();
    assert_eq!(find("shared@acme.example").await, None);
    let input: UserProfileInput = serde_json::from_value(json!({"workspace_id": "acme"})).unwrap();
    service::put_user(&t.store, &UserId::parse(&owner).unwrap(), input).await.unwrap();
    assert_eq!(find("new@acme.example").await, None);
    let idents: Vec<String> =
        t.items().await.into_iter().map(|i| s(&i, "PK")).filter(|pk| pk.starts_with("IDENT#")).collect();
    assert_eq!(idents.len(), 2, "eve's at globex and the mover's at initech: {idents:?}");
    assert!(idents.iter().all(|pk| !pk.contains('@')), "no address spelled out in a key: {idents:?}");
}

#[tokio::test]
async fn a_signal_revokes_the_member_once_and_its_jti_lives_as_long_as_the_token() {
    let t = TestTable::new().await;
    t.store.put_identity_provider(&provider("acme", "aud")).await.unwrap();
    member(&t, "ann", "acme", "ann@acme.example").await.unwrap();
    let tokens =
        [sign_in(&t.store, "ann", ClientKind::Browser).await, sign_in(&t.store, "ann", ClientKind::MobileApp).await];
    let p = provider("acme", "aud");
    let signal = once("jti-1");
    let policy = Policy::default();
    let now = service::now_ms();
    let out = service::revoke_for_provider(
        &t.store,
        &policy,
        &p,
        &email("ann@acme.example"),
        RevokeReason::IdpLogout,
        &signal,
        now,
    )
    .await
    .unwrap();
    let SignalOutcome::Revoked { count, .. } = out else { panic!("{out:?}") };
    assert_eq!(count.revoked, 2);
    for tok in &tokens {
        let token = active_sessions::token::SessionToken::parse(&tok.token).unwrap();
        assert!(service::authenticate(&t.store, &token, service::now_ms()).await.is_err());
    }
    let items = t.items().await;
    let jti = items.iter().find(|i| s(i, "PK").starts_with("JTI#")).expect("the jti is recorded");
    assert_eq!(s(jti, "ExpiresAt"), signal.keep_until_secs.to_string(), "TTL removes it once the token is dead");
    let audit: Vec<_> = items.iter().filter(|i| s(i, "Type") == "AUDIT").collect();
    assert_eq!((audit.len(), s(audit[0], "Actor"), s(audit[0], "ActorId")), (1, "idp".into(), ISS.into()));
    // Again: refused, and nothing more is written.
    let before = t.items().await.len();
    let again = service::revoke_for_provider(
        &t.store,
        &policy,
        &p,
        &email("ann@acme.example"),
        RevokeReason::IdpLogout,
        &signal,
        now + 5,
    )
    .await;
    assert!(matches!(again, Err(ServiceError::Replayed)), "{again:?}");
    assert_eq!(t.items().await.len(), before);
}

#[tokio::test]
async fn the_same_signal_delivered_twice_at_once_acts_once() {
    let t = TestTable::new().await;
    t.store.put_identity_provider(&provider("acme", "aud")).await.unwrap();
    member(&t, "ann", "acme", "ann@acme.example").await.unwrap();
    for _ in 0..3 {
        sign_in(&t.store, "ann", ClientKind::Browser).await;
    }
    let p = provider("acme", "aud");
    let signal = once("jti-twice");
    let policy = Policy::default();
    let ids = email("ann@acme.example");
    let go = |delay: i64| {
        let (store, p, ids, signal, policy) = (&t.store, &p, &ids, &signal, &policy);
        async move {
            service::revoke_for_provider(
                store,
                policy,
                p,
                ids,
                RevokeReason::IdpLogout,
                signal,
                service::now_ms() + delay,
            )
            .await
        }
    };
    let (a, b) = tokio::join!(go(0), go(1));
    let revoked = [&a, &b].iter().filter(|r| matches!(r, Ok(SignalOutcome::Revoked { .. }))).count();
    let refused = [&a, &b].iter().filter(|r| matches!(r, Err(ServiceError::Replayed))).count();
    assert_eq!((revoked, refused), (1, 1), "{a:?} {b:?}");
    let audit = t.items().await.into_iter().filter(|i| s(i, "Type") == "AUDIT").count();
    assert_eq!(audit, 1, "one revocation, one event");
}

#[tokio::test]
async fn a_revocation_that_fails_records_no_jti_so_the_provider_may_retry() {
    let t = TestTable::new().await;
    let ann = UserId::parse("ann").unwrap();
    let rev = Revocation {
        at_ms: 2_000,
        actor: Actor::Idp,
        actor_id: ISS.into(),
        reason: RevokeReason::IdpLogout,
        source_ip: None,
    };
    let event = |id: u64| active_sessions::model::AuditEvent {
        event_id: ulid::Ulid::from_parts(id, 1),
        actor: Actor::Idp,
        actor_id: ISS.into(),
        target_user: ann.clone(),
        scope: active_sessions::model::AuditScope::All,
        session_ids: vec![],
        device_labels: vec![],
        count: 0,
        reason: RevokeReason::IdpLogout,
        source_ip: None,
        note: None,
        at: 2_000,
        expires_at: 9_999_999_999,
        actor_workspace: None,
        swept_at: None,
    };
    let wm = |before_ms| Watermark { before_ms, keep: None };
    // A watermark is in force that the signal's write did not expect: its transaction fails.
    t.store.swap_watermark(&ann, None, wm(1_000), &rev, &event(1), None).await.unwrap().unwrap();
    let signal = once("jti-retry");
    let lost = t.store.swap_watermark(&ann, None, wm(2_000), &rev, &event(2), Some(&signal)).await.unwrap();
    assert_eq!(lost, Err(Some(wm(1_000))));
    assert!(!t.items().await.iter().any(|i| s(i, "PK").starts_with("JTI#")), "no jti without its revocation");
    // The retry, with the same jti, goes through.
    t.store.swap_watermark(&ann, Some(wm(1_000)), wm(2_000), &rev, &event(2), Some(&signal)).await.unwrap().unwrap();
    let replay = t.store.swap_watermark(&ann, Some(wm(2_000)), wm(3_000), &rev, &event(3), Some(&signal)).await;
    assert!(matches!(replay, Err(StoreError::Replayed)), "{replay:?}");
}

#[tokio::test]
async fn a_jwks_url_that_resolves_to_a_private_address_is_refused() {
    let t = TestTable::new().await;
    let ws = WorkspaceId::parse("acme").unwrap();
    // `localhost` is a name, resolved when the provider is set: loopback, refused when deployed.
    let input = |jwks: &str| service::ProviderInput {
        issuer: "https://idp.example".into(),
        jwks_url: jwks.into(),
        audience: "aud".into(),
        subject_format: SubjectFormat::Email,
    };
    let deployed = Egress::default();
    let local = Egress { allow_loopback: true };
    for url in ["https://localhost/keys", "https://localhost.:8443/keys"] {
        let r = service::put_identity_provider(&t.store, &ws, input(url), deployed, 0).await;
        assert!(matches!(r, Err(ServiceError::BadRequest(_))), "{url}: {r:?}");
    }
    assert!(service::put_identity_provider(&t.store, &ws, input("http://localhost:9/keys"), local, 0).await.is_ok());
    let r =
        service::put_identity_provider(&t.store, &ws, input("https://no-such-host.invalid/keys"), deployed, 0).await;
    assert!(matches!(r, Err(ServiceError::BadRequest(_))), "{r:?}");
}
