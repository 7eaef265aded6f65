//! Delivery over time and under load: sweeps, the horizon, expiries, hanging and open-circuit products, and where owed deliveries are written.

use super::*;

/// A revoke-all's summary completes only once its sweep has.
#[tokio::test]
async fn a_revoke_all_summary_completes_only_once_swept() {
    let t = TestTable::new().await;
    let product = StandInProduct::start(Duration::ZERO, 0).await;
    let d = Delivery::new(&[("chatgpt", &product.url)], RETRY).await;
    let f = d.fanout(&t.store);
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let a = sign_in(&t.store, "alice", ClientKind::MobileApp).await;
    sign_in(&t.store, "alice", ClientKind::DesktopApp).await;
    let now = service::now_ms();
    service::revoke_all(&t.store, &d.policy, &caller(&me.token), &Subject::Own, RevokeScope::Others, None, now)
        .await
        .unwrap();
    // A sweep that got one session of two, then died: that session's revocation, as the sweep
    // writes it, and its stream record through the fan-out.
    let seen = t.lambda_stream_records().await.len();
    let revocation = active_sessions::model::Revocation {
        at_ms: now,
        actor: active_sessions::model::Actor::User,
        actor_id: "alice".into(),
        reason: active_sessions::model::RevokeReason::UserLogoutOthers,
        source_ip: None,
    };
    t.store.revoke_session(&user("alice"), a.session_id, &revocation, d.policy.tombstone_secs, None).await.unwrap();
    assert!(revocation_fanout::handle(&f, stream_after(&t, seen).await).await.batch_item_failures.is_empty());
    let token = SessionToken::parse(&me.token).unwrap();
    let events = || {
        service::list_events(&t.store, &d.policy, &token, &Subject::Own, Default::default(), None, service::now_ms())
    };
    let summary = events().await.unwrap().events[0].receipts.clone().expect("receipts");
    assert_eq!(summary.sessions, 1);
    assert_eq!(summary.completed_at, None, "one of two sessions swept is not complete: {summary:?}");
    // The whole stream now: the watermark's sweep (marking the event), then the rest's records.
    assert!(revocation_fanout::handle(&f, stream_event(&t).await).await.batch_item_failures.is_empty());
    assert!(revocation_fanout::handle(&f, stream_event(&t).await).await.batch_item_failures.is_empty());
    let summary = events().await.unwrap().events[0].receipts.clone().expect("receipts");
    assert_eq!((summary.sessions, summary.delivered), (2, 2));
    assert!(summary.completed_at.is_some(), "swept and told: complete: {summary:?}");
}

/// The tombstone carries the receipts: it outlives the retry horizon, whatever
/// `TOMBSTONE_TTL_SECONDS` says. The revoke itself uses the short lifetime: with the default's,
/// 24 h, already past the 1 h horizon, the test would prove nothing.
#[tokio::test]
async fn the_tombstone_outlives_the_retry_horizon() {
    let t = TestTable::new().await;
    let down = StandInProduct::start(Duration::ZERO, usize::MAX).await;
    let mut d = Delivery::new(&[("codex", &down.url)], RETRY).await;
    d.policy = Policy { tombstone_secs: 60, ..Policy::default() };
    let now = service::now_ms();
    let target = revoke_one_with(&t, &d.policy).await;
    let revoked: i64 =
        integration_tests::s(&t.get("USER#alice", &format!("SESSION#{target}")).await.unwrap(), "ExpiresAt")
            .parse()
            .unwrap();
    assert!(revoked < now / 1000 + RETRY.horizon_ms / 1000, "the revoke wrote the short tombstone");
    assert!(revocation_fanout::handle(&d.fanout(&t.store), stream_event(&t).await)
        .await
        .batch_item_failures
        .is_empty());
    let item = t.get("USER#alice", &format!("SESSION#{target}")).await.unwrap();
    let expires: i64 = integration_tests::s(&item, "ExpiresAt").parse().unwrap();
    assert!(expires >= now / 1000 + RETRY.horizon_ms / 1000, "the tombstone ends at {expires}, before the horizon");
    // A tombstone that outlives the horizon anyway keeps its own lifetime (one write, no change).
    let t2 = TestTable::new().await;
    let target = revoke_one(&t2).await;
    let before: i64 =
        integration_tests::s(&t2.get("USER#alice", &format!("SESSION#{target}")).await.unwrap(), "ExpiresAt")
            .parse()
            .unwrap();
    d.policy = Policy::default();
    assert!(revocation_fanout::handle(&d.fanout(&t2.store), stream_event(&t2).await)
        .await
        .batch_item_failures
        .is_empty());
    let after: i64 =
        integration_tests::s(&t2.get("USER#alice", &format!("SESSION#{target}")).await.unwrap(), "ExpiresAt")
            .parse()
            .unwrap();
    assert_eq!(before, after);
}

/// When TTL removes a session that was still active, every product is told through the same path
/// and retries, and the receipts are kept on a tombstone of the expiry.
#[tokio::test]
async fn an_expired_session_is_logged_out_of_every_product() {
    let t = TestTable::new().await;
    let product = StandInProduct::start(Duration::ZERO, 0).await;
    let flaky = StandInProduct::start(Duration::ZERO, 1).await;
    let d = Delivery::new(&[("chatgpt", &product.url), ("codex", &flaky.url)], RETRY).await;
    let path = format!("{}/functions/revocation-fanout/tests/fixtures/remove-ttl.json", integration_tests::repo_root());
    let event: Event = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for _ in 0..2 {
        assert!(revocation_fanout::handle(&d.fanout(&t.store), event.clone()).await.batch_item_failures.is_empty());
    }
    let told: Vec<String> = product.received().into_iter().map(|r| r.sid).collect();
    assert_eq!(told, vec!["01M8CPVF8A7ZAP09JVSBBWZEQF".to_owned()], "told once, redelivered or not");
    let session = active_sessions::domain::SessionId::parse("01M8CPVF8A7ZAP09JVSBBWZEQF").unwrap();
    let tally = d.queue.pump_until(&d.courier(&t.store), Duration::from_secs(5), |t| t.delivered == 1).await;
    assert_eq!(tally.delivered, 1, "the failing product is retried: {tally:?}");
    let receipts = t.store.receipts(&user("alice"), session).await.unwrap();
    assert_eq!(
        (receipts["chatgpt"].status, receipts["codex"].status),
        (DeliveryStatus::Delivered, DeliveryStatus::Delivered)
    );
    let tombstone = t.get("USER#alice", "SESSION#01M8CPVF8A7ZAP09JVSBBWZEQF").await.unwrap();
    assert_eq!(
        (integration_tests::s(&tombstone, "Status"), integration_tests::s(&tombstone, "RevokeReason")),
        ("revoked".into(), "expired".into())
    );
    let audit: Vec<_> =
        t.items().await.into_iter().filter(|i| integration_tests::s(i, "SK").starts_with("AUDIT#")).collect();
    assert_eq!(audit.len(), 1, "one expiry event");
}

/// A hanging product costs the others nothing: in one batch of retries with a hanging product's, a
/// healthy product's retry is told at once.
#[tokio::test]
async fn a_hanging_product_holds_no_other_products_retry() {
    let t = TestTable::new().await;
    let hanging = StandInProduct::start(Duration::from_secs(3), 0).await;
    let healthy = StandInProduct::start(Duration::ZERO, 1).await;
    let d = Delivery::new(&[("codex", &hanging.url), ("chatgpt", &healthy.url)], RETRY).await;
    // Fewer failures than open a breaker: the hanging product's retries are all made.
    for _ in 0..3 {
        revoke_one(&t).await;
    }
    assert!(revocation_fanout::handle(&d.fanout(&t.store), stream_event(&t).await)
        .await
        .batch_item_failures
        .is_empty());
    // Six retries are queued: three for each product, in one batch.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let started = std::time::Instant::now();
    let courier = d.courier(&t.store);
    let pump = d.queue.pump_until(&courier, Duration::from_secs(8), |t| t.delivered >= 3);
    let watch = async {
        while healthy.received().iter().filter(|r| r.status == 200).count() < 3
            && started.elapsed() < Duration::from_secs(8)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        started.elapsed()
    };
    let (_, told_after) = tokio::join!(pump, watch);
    assert!(told_after < Duration::from_millis(1_500), "the healthy product waited {told_after:?}");
}

/// A product whose circuit is open is not connected to: its deliveries are put back on the queue
/// with their delay and no attempt counted, until a probe after the cool-down finds it back.
#[tokio::test]
async fn a_product_whose_circuit_is_open_is_not_connected_to() {
    let t = TestTable::new().await;
    let product = StandInProduct::start(Duration::ZERO, 0).await;
    product.set_down(true);
    let breaker =
        BreakerConfig { failures: 2, period: Duration::from_secs(30), cool_down: Duration::from_millis(1_500) };
    let d = Delivery::with(&[("codex", &product.url)], RETRY, breaker, None).await;
    let mut targets = Vec::new();
    for _ in 0..5 {
        targets.push(revoke_one(&t).await);
    }
    // One at a time, so the order is known: two failures open the circuit, three are put back.
    for record in stream_event(&t).await.records {
        let event: Event = serde_json::from_value(serde_json::json!({ "Records": [record] })).unwrap();
        assert!(revocation_fanout::handle(&d.fanout(&t.store), event).await.batch_item_failures.is_empty());
    }
    assert_eq!(product.received().len(), 2, "no connection once the circuit opened");
    let mut deferred = 0;
    for id in &targets {
        let r = t.store.receipts(&user("alice"), *id).await.unwrap()["codex"].clone();
        assert_eq!(r.status, DeliveryStatus::Pending);
        if r.attempts == 0 {
            assert_eq!(r.error.as_deref(), Some("circuit_open"), "{r:?}");
            assert!(r.link.is_some(), "its message is queued");
            deferred += 1;
        }
    }
    assert_eq!(deferred, 3, "an attempt not made is not counted");
    // The product comes back; after the cool-down, a probe closes the circuit and all are told.
    product.set_down(false);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let courier = d.courier(&t.store);
    let tally = d.queue.pump_until(&courier, Duration::from_secs(12), |t| t.delivered == 5).await;
    assert_eq!(tally.delivered, 5, "{tally:?}");
    for id in &targets {
        assert_eq!(t.store.receipts(&user("alice"), *id).await.unwrap()["codex"].status, DeliveryStatus::Delivered);
    }
}

/// A retry put back while its product's circuit is open writes nothing to the table: the same
/// message (its link, one more deferral) goes back on the queue.
#[tokio::test]
async fn a_deferred_retry_writes_nothing_to_the_table() {
    let t = TestTable::new().await;
    let product = StandInProduct::start(Duration::ZERO, 0).await;
    product.set_down(true);
    let breaker = BreakerConfig { failures: 1, period: Duration::from_secs(30), cool_down: Duration::from_secs(60) };
    let d = Delivery::with(&[("codex", &product.url)], RETRY, breaker, None).await;
    let target = revoke_one(&t).await;
    assert!(revocation_fanout::handle(&d.fanout(&t.store), stream_event(&t).await)
        .await
        .batch_item_failures
        .is_empty());
    let before = t.store.receipts(&user("alice"), target).await.unwrap()["codex"].clone();
    assert_eq!((before.status, before.attempts), (DeliveryStatus::Pending, 1), "the first attempt failed: {before:?}");
    let courier = d.courier(&t.store);
    let tally = d.queue.pump_until(&courier, Duration::from_secs(5), |t| t.deferred == 1).await;
    assert_eq!(tally.deferred, 1, "{tally:?}");
    let after = t.store.receipts(&user("alice"), target).await.unwrap()["codex"].clone();
    assert_eq!(before, after, "the receipt is untouched");
    assert_eq!(product.received().len(), 1, "no connection while the circuit is open");
    // The message is back, delayed (2 s: the backoff of one failure and one deferral).
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let queued = d.queue.peek().await;
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!((Some(queued[0].link.clone()), queued[0].deferrals, queued[0].attempt), (before.link, 1, 2));
}

/// A delivery owed to a product is written to no partition shared by every user.
#[tokio::test]
async fn owed_deliveries_write_to_no_shared_partition() {
    let t = TestTable::new().await;
    let down = StandInProduct::start(Duration::ZERO, usize::MAX).await;
    let d = Delivery::new(&[("codex", &down.url)], RETRY).await;
    for u in ["alice", "bob"] {
        let me = sign_in(&t.store, u, ClientKind::Browser).await;
        let phone = sign_in(&t.store, u, ClientKind::MobileApp).await;
        service::revoke_session(
            &t.store,
            &d.policy,
            &caller(&me.token),
            &Subject::Own,
            phone.session_id,
            service::now_ms(),
        )
        .await
        .unwrap();
    }
    assert!(revocation_fanout::handle(&d.fanout(&t.store), stream_event(&t).await)
        .await
        .batch_item_failures
        .is_empty());
    let shared: Vec<String> = t
        .items()
        .await
        .iter()
        .map(|item| integration_tests::s(item, "PK"))
        .filter(|pk| !pk.starts_with("USER#") && !pk.starts_with("WORKSPACE#"))
        .collect();
    assert!(shared.is_empty(), "written outside the users' own partitions: {shared:?}");
    assert_eq!(d.queue.depth().await.2, 2, "the owed deliveries are on the queue");
}
