//! Integrity under concurrency and failure, on DynamoDB Local: the cases the model-based test
//! (`model.rs`) found, pinned as plain tests, and the stalled or unreachable store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use active_sessions::domain::SessionId;
use active_sessions::domain::{ClientKind, Role, UserId, WorkspaceId};
use active_sessions::model::{Actor, AuditEvent, AuditScope, Revocation, RevokeReason};
use active_sessions::service::{self, Caller, RevokeScope, Subject, UserProfileInput};
use active_sessions::store::{AuditStore, SessionsStore};
use active_sessions::store::{Audited, ReadSet, SessionState};
use active_sessions::testing::{parts, request, sign_in, sign_in_with, ChaosStore};
use active_sessions::token::SessionToken;
use active_sessions::StoreError;
use active_sessions::{table, Policy, ServiceError, SessionStore};
use integration_tests::{s, store_at, OwnServer, TestTable};

fn caller(token: &str) -> Caller {
    Caller { token: SessionToken::parse(token).unwrap(), source_ip: None }
}

async fn workspace<S: SessionStore>(store: &S, member: &str, admin: &str) {
    for (user, role) in [(member, Role::Member), (admin, Role::Admin)] {
        let ws = WorkspaceId::parse("acme").unwrap();
        let input = UserProfileInput {
            workspace_id: Some(ws),
            role: Some(role),
            sso_linked: None,
            email: None,
            idp_subject: None,
        };
        service::put_user(store, &UserId::parse(user).unwrap(), input).await.unwrap();
    }
}

async fn active(store: &impl SessionStore, user: &str) -> Vec<SessionState> {
    let user = UserId::parse(user).unwrap();
    let read = store.read(&ReadSet { profiles: vec![user.clone()], ..Default::default() }).await.unwrap();
    let watermark = read.profiles.get(&user).and_then(|p| p.watermark);
    let now = service::now_ms();
    store
        .session_states(&user)
        .await
        .unwrap()
        .into_iter()
        .filter(|st| st.active && st.expires_at * 1000 > now)
        .filter(|st| !watermark.is_some_and(|w| w.covers_at(st.signed_in_at, st.session_id)))
        .collect()
}

/// Defect 1: "log out other sessions" racing an admin's offboarding. Whichever watermark lands
/// first, the member's kept session must end up revoked: the offboarding covered it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_out_others_racing_an_offboard_never_revives_the_kept_session() {
    let t = TestTable::new().await;
    let policy = Policy::default();
    for round in 0..12u64 {
        let (member, admin) = (format!("member{round}"), format!("admin{round}"));
        workspace(&t.store, &member, &admin).await;
        let a = sign_in(&t.store, &member, ClientKind::Browser).await;
        let root = sign_in(&t.store, &admin, ClientKind::Browser).await;
        let now = service::now_ms();
        // Seeded interleavings over the real store: sometimes the offboard's write lands first.
        let (x, y) = (Arc::new(t.store.clone()), Arc::new(t.store.clone()));
        let (others_store, admin_store) = (ChaosStore::new(x, round * 2 + 1), ChaosStore::new(y, round * 7 + 3));
        let subject = Subject::Member(UserId::parse(&member).unwrap());
        let (me, admin) = (caller(&a.token), caller(&root.token));
        // Both orders of the two clocks: the offboard later, then the log-out-others later.
        let (t_others, t_admin) = if round % 2 == 0 { (now, now + 1) } else { (now + 1, now) };
        let (others, offboard) = tokio::join!(
            service::revoke_all(&others_store, &policy, &me, &Subject::Own, RevokeScope::Others, None, t_others),
            service::revoke_all(&admin_store, &policy, &admin, &subject, RevokeScope::All, None, t_admin),
        );
        offboard.expect("the offboarding succeeds");
        assert!(matches!(others, Ok(_) | Err(ServiceError::InvalidToken)), "{others:?}");
        let token = SessionToken::parse(&a.token).unwrap();
        let valid = service::authenticate(&t.store, &token, service::now_ms()).await;
        assert!(valid.is_err(), "round {round}: the offboarded member's session validates again");
    }
}

/// Defect 2: revoking one session that a revoke-all covered already (before the sweep reached
/// it) is a repeat: 204, and nothing written, neither a second audit event nor a second reason.
#[tokio::test]
async fn a_revoke_one_after_a_revoke_all_writes_nothing() {
    let t = TestTable::new().await;
    let policy = Policy::default();
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let phone = sign_in(&t.store, "alice", ClientKind::MobileApp).await;
    let now = service::now_ms();
    service::revoke_all(&t.store, &policy, &caller(&me.token), &Subject::Own, RevokeScope::Others, None, now)
        .await
        .unwrap();
    let before = t.items().await;
    let res = revoke_session::handle(
        &t.store,
        &policy,
        active_sessions::testing::with_path(
            request("DELETE", &format!("/v1/sessions/{}", phone.session_id), Some(&me.token)),
            &[("id", &phone.session_id.to_string())],
        ),
    )
    .await;
    assert_eq!(parts(&res).0, 204);
    let after = t.items().await;
    assert_eq!(after.len(), before.len(), "no second audit event");
    let item = t.get("USER#alice", &format!("SESSION#{}", phone.session_id)).await.unwrap();
    assert_eq!(s(&item, "Status"), "active", "left to the sweep, which gives it the revoke-all's reason");
    // And the repeat of a revoke-one itself.
    let third = sign_in(&t.store, "alice", ClientKind::DesktopApp).await;
    for _ in 0..2 {
        service::revoke_session(
            &t.store,
            &policy,
            &caller(&me.token),
            &Subject::Own,
            third.session_id,
            service::now_ms(),
        )
        .await
        .unwrap();
    }
    let events = t.items().await.into_iter().filter(|i| s(i, "Type") == "AUDIT").count();
    assert_eq!(events, 2, "the revoke-all's and the one revoke-one's");
}

/// A revoke-all with nothing left to revoke writes nothing.
#[tokio::test]
async fn a_repeated_revoke_all_writes_nothing() {
    let t = TestTable::new().await;
    let policy = Policy::default();
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    sign_in(&t.store, "alice", ClientKind::MobileApp).await;
    let me = caller(&me.token);
    let others = |now| service::revoke_all(&t.store, &policy, &me, &Subject::Own, RevokeScope::Others, None, now);
    assert_eq!(others(service::now_ms()).await.unwrap().revoked, 1);
    let before = t.items().await;
    assert_eq!(others(service::now_ms() + 5).await.unwrap().revoked, 0);
    assert_eq!(t.items().await, before, "nothing written");
}

/// Defect 4: parallel sign-ins never leave more active sessions than the cap, and the newest
/// sessions are the ones kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_sign_ins_hold_the_cap() {
    let t = TestTable::new().await;
    let policy = Policy { max_sessions: 5, ..Policy::default() };
    for _ in 0..5 {
        sign_in_with(&t.store, &policy, "alice", ClientKind::Browser).await;
    }
    let store = &t.store;
    let signed: Vec<_> = futures::future::join_all(
        (0..16).map(|_| async { sign_in_with(store, &policy, "alice", ClientKind::Browser).await }),
    )
    .await;
    // The documented bound: at most N - 1 above the cap after N sign-ins at once...
    let left = active(&t.store, "alice").await;
    assert!((5..5 + 16).contains(&left.len()), "{} active", left.len());
    assert!(signed.iter().any(|s| left.iter().any(|st| st.session_id == s.session_id)), "a new one is kept");
    // ...and the next sign-in brings it back to the cap exactly, keeping the most recent.
    let next = sign_in_with(&t.store, &policy, "alice", ClientKind::Browser).await;
    let left = active(&t.store, "alice").await;
    assert_eq!(left.len(), 5, "exactly the cap: {left:?}");
    assert!(left.iter().any(|st| st.session_id == next.session_id));
    let evicted = 5 + 16 + 1 - 5;
    let events = t
        .items()
        .await
        .into_iter()
        .filter(|i| i.get("Reason").and_then(|r| r.as_s().ok()).is_some_and(|r| r == "session_limit"))
        .count();
    assert_eq!(events, evicted, "one audit event per evicted session, none twice");
}

/// Defect 4: a sign-in that fails evicts nothing.
#[tokio::test]
async fn a_failed_sign_in_evicts_nothing() {
    let t = TestTable::new().await;
    let policy = Policy { max_sessions: 3, ..Policy::default() };
    for _ in 0..3 {
        sign_in_with(&t.store, &policy, "alice", ClientKind::Browser).await;
    }
    let chaos = ChaosStore::new(Arc::new(t.store.clone()), 1);
    chaos.fail("create_session");
    let input = service::NewSession {
        user_id: UserId::parse("alice").unwrap(),
        apps: vec![active_sessions::domain::AppId::parse("chatgpt").unwrap()],
        client: ClientKind::Browser,
        user_agent: "Mozilla/5.0".into(),
        ip: "203.0.113.9".into(),
        location: None,
        trusted: None,
        ttl_seconds: None,
    };
    assert!(service::create_session(&chaos, &policy, input, service::now_ms()).await.is_err());
    assert_eq!(active(&t.store, "alice").await.len(), 3, "nothing evicted");
    let events = t.items().await.into_iter().filter(|i| s(i, "Type") == "AUDIT").count();
    assert_eq!(events, 0);
}

async fn own_table(server: &OwnServer) -> active_sessions::DynamoStore {
    let name = format!("stall-{}", active_sessions::domain::SessionId::new().to_string().to_lowercase());
    // Set up with the tests' timeouts (a JVM just started is slow), then run with production's.
    let setup = store_at(server.port, &name, &integration_tests::test_timeouts()).await;
    table::create_table(setup.client(), &name).await.expect("create table");
    store_at(server.port, &name, &Default::default()).await
}

/// Defect 5: a paused DynamoDB (the process stopped, its port still open) answers `503`
/// problem+json with `Retry-After` in about the operation budget, and nothing is written.
#[tokio::test]
async fn a_stalled_dynamodb_is_a_503_within_the_budget() {
    let server = OwnServer::dynamodb();
    let store = own_table(&server).await;
    let me = sign_in(&store, "alice", ClientKind::Browser).await;
    let other = sign_in(&store, "alice", ClientKind::MobileApp).await;
    server.signal("STOP");
    let started = Instant::now();
    let res = tokio::time::timeout(
        Duration::from_secs(10),
        list_sessions::handle(&store, request("GET", "/v1/sessions", Some(&me.token))),
    )
    .await
    .expect("answered, not held");
    let elapsed = started.elapsed();
    let (status, ct, body) = parts(&res);
    assert_eq!((status, ct.as_str()), (503, "application/problem+json"), "{body}");
    assert_eq!(res.headers()["retry-after"], "2");
    eprintln!("stalled DynamoDB: GET /v1/sessions answered 503 after {elapsed:?}");
    assert!(elapsed < Duration::from_millis(3500), "503 after {elapsed:?}");
    // A revoke-one transaction (session + audit event) sent while stalled: 503 too. Whatever the
    // paused server does with it once resumed, it is all or nothing.
    let started = Instant::now();
    let revocation = Revocation {
        at_ms: service::now_ms(),
        actor: Actor::User,
        actor_id: "alice".into(),
        reason: RevokeReason::UserLogout,
        source_ip: None,
    };
    let event = AuditEvent {
        event_id: SessionId::new().ulid(),
        actor: Actor::User,
        actor_id: "alice".into(),
        target_user: UserId::parse("alice").unwrap(),
        scope: AuditScope::Sessions,
        session_ids: vec![other.session_id],
        device_labels: vec!["phone".into()],
        count: 1,
        reason: RevokeReason::UserLogout,
        source_ip: None,
        note: None,
        at: revocation.at_ms,
        expires_at: revocation.at_ms / 1000 + 3600,
        actor_workspace: None,
        swept_at: None,
    };
    let user = UserId::parse("alice").unwrap();
    let audited = Audited { event: &event, signed_in_at: service::now_ms() - 60_000 };
    let revoke = store.revoke_session(&user, other.session_id, &revocation, 60, Some(audited)).await;
    assert!(matches!(revoke, Err(StoreError::Unavailable(_))), "{revoke:?}");
    assert!(started.elapsed() < Duration::from_millis(3500));
    server.signal("CONT");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let token = SessionToken::parse(&other.token).unwrap();
    let still_valid = service::authenticate(&store, &token, service::now_ms()).await.is_ok();
    let audit = store.query_audit(&user, None, 10).await.unwrap();
    let written = audit.events.iter().any(|e| e.event_id == event.event_id);
    assert_eq!(still_valid, !written, "half-written: session valid {still_valid}, audit event written {written}");
}

/// Defect 5: DynamoDB unreachable (nothing listens on its port) is a `503` at once.
#[tokio::test]
async fn an_unreachable_dynamodb_is_a_503() {
    let server = OwnServer::dynamodb();
    let store = own_table(&server).await;
    let me = sign_in(&store, "alice", ClientKind::Browser).await;
    server.stop();
    let started = Instant::now();
    let res = list_sessions::handle(&store, request("GET", "/v1/sessions", Some(&me.token))).await;
    let (status, ct, _) = parts(&res);
    assert_eq!((status, ct.as_str()), (503, "application/problem+json"));
    assert_eq!(res.headers()["retry-after"], "2");
    eprintln!("unreachable DynamoDB: GET /v1/sessions answered 503 after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_millis(3500), "{:?}", started.elapsed());
}
