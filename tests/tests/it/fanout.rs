//! The fan-out's effects are independent (DynamoDB Local, real stream records, the retry queue on
//! the local SQS, stand-in products over HTTP): one product down or slow neither blocks, delays
//! nor repeats another and never fails the stream record; it is retried from the queue (with the
//! same `jti`) until the horizon, then given up on; a retry delivered twice advances its receipt
//! once and starts no second chain; and Redis down stops nothing.

use std::time::Duration;

use active_sessions::domain::{ClientKind, UserId};
use active_sessions::logout::RetryPolicy;
use active_sessions::model::{AuditScope, DeliveryStatus};
use active_sessions::queue::RetryMessage;
use active_sessions::service::{self, Caller, RevokeScope, Subject};
use active_sessions::store::ReceiptsStore;
use active_sessions::testing::sign_in;
use active_sessions::token::SessionToken;
use aws_lambda_events::event::dynamodb::Event;
use integration_tests::{s, Delivery, StandInProduct, TestTable};

fn caller(token: &str) -> Caller {
    Caller { token: SessionToken::parse(token).unwrap(), source_ip: None }
}

/// The table's stream so far, as one Lambda event.
async fn stream_event(t: &TestTable) -> Event {
    serde_json::from_value(serde_json::json!({ "Records": t.lambda_stream_records().await })).expect("event")
}

fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

/// Retries after 1 s, then 2 s (SQS holds messages back in whole seconds); the first attempt
/// waits 300 ms at most.
const RETRY: RetryPolicy = RetryPolicy {
    horizon_ms: 3_600_000,
    backoff_ms: 1_000,
    max_backoff_ms: 2_000,
    inline_budget: Duration::from_millis(300),
};

/// One revoked session of alice's, through the real service; its id.
async fn revoke_one(t: &TestTable) -> active_sessions::domain::SessionId {
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let phone = sign_in(&t.store, "alice", ClientKind::MobileApp).await;
    service::revoke_session(
        &t.store,
        &Default::default(),
        &caller(&me.token),
        &Subject::Own,
        phone.session_id,
        service::now_ms(),
    )
    .await
    .unwrap();
    phone.session_id
}

/// One product's 500 never fails the stream record (the redelivery would hold the shard): the
/// record succeeds, the product's retry is on the queue, and the queue's consumer tells it.
#[tokio::test]
async fn a_failing_product_is_retried_from_the_queue_without_failing_the_record() {
    let t = TestTable::new().await;
    let fast = StandInProduct::start(Duration::ZERO, 0).await;
    let flaky = StandInProduct::start(Duration::ZERO, 1).await;
    let d = Delivery::new(&[("chatgpt", &fast.url), ("codex", &flaky.url)], RETRY).await;
    let f = d.fanout(&t.store);
    let target = revoke_one(&t).await;
    let event = stream_event(&t).await;

    let first = revocation_fanout::handle(&f, event.clone()).await;
    assert!(first.batch_item_failures.is_empty(), "a product's failure never fails the record: {first:?}");
    assert_eq!(fast.received().len(), 1);
    assert_eq!(flaky.received().iter().map(|r| r.status).collect::<Vec<_>>(), vec![500]);
    // The receipts on the tombstone: the caches, one product delivered, one pending with its
    // retry's link.
    let receipts = t.store.receipts(&user("alice"), target).await.unwrap();
    assert_eq!((receipts["chatgpt"].status, receipts["chatgpt"].attempts), (DeliveryStatus::Delivered, 1));
    assert_eq!((receipts["codex"].status, receipts["codex"].attempts), (DeliveryStatus::Pending, 1));
    assert_eq!(receipts["codex"].error.as_deref(), Some("http_500"), "the class, never the body");
    let tombstone = t.get("USER#alice", &format!("SESSION#{target}")).await.unwrap();
    assert!(tombstone.contains_key("CachesInvalidatedAt"));
    assert_eq!(d.queue.depth().await, (0, 0, 1), "one message, held back by its backoff");

    // Lambda delivers the record again (say a later write failed): products tried already are not
    // posted to again; the queue has them.
    let again = revocation_fanout::handle(&f, event).await;
    assert!(again.batch_item_failures.is_empty(), "{again:?}");
    assert_eq!((fast.received().len(), flaky.received().len()), (1, 1));
    assert_eq!(d.queue.depth().await, (0, 0, 1), "no second message");

    // The consumer, once the retry is due: the product is told again, with the same jti.
    let courier = d.courier(&t.store);
    let tally = d.queue.pump_until(&courier, Duration::from_secs(5), |t| t.delivered == 1).await;
    assert_eq!(tally.delivered, 1, "{tally:?}");
    let attempts = flaky.received();
    assert_eq!(attempts.iter().map(|r| r.status).collect::<Vec<_>>(), vec![500, 200]);
    assert_eq!(attempts[0].jti, attempts[1].jti, "a retry carries the same jti");
    assert_eq!(attempts[0].sid, target.to_string());
    assert_eq!(fast.received().len(), 1, "a product told already is not told twice");
    let receipts = t.store.receipts(&user("alice"), target).await.unwrap();
    assert_eq!((receipts["codex"].status, receipts["codex"].attempts), (DeliveryStatus::Delivered, 2));
    assert_eq!(receipts["chatgpt"].attempts, 1, "not tried again");
    assert_eq!(d.queue.depth().await, (0, 0, 0), "the queue is empty");
    // The tombstone writes are revoked → revoked MODIFYs: the template's filter keeps them from
    // the fan-out.
    let filters = local_stack::filter::from_template(&integration_tests::repo_file("template.yaml")).unwrap();
    let marks: Vec<_> = t
        .lambda_stream_records()
        .await
        .into_iter()
        .filter(|r| {
            let new = &r["dynamodb"]["NewImage"];
            new.get("Receipts").is_some() || new.get("CachesInvalidatedAt").is_some()
        })
        .collect();
    assert!(marks.len() >= 4, "a write per receipt: {}", marks.len());
    assert!(marks.iter().all(|r| !local_stack::filter::passes(&filters, r)), "a receipt write would wake the fan-out");
}

#[tokio::test]
async fn with_redis_down_the_sweep_runs_and_products_are_told() {
    let t = TestTable::new().await;
    let product = StandInProduct::start(Duration::ZERO, 0).await;
    // Nothing listens on port 1: every Redis call fails at once.
    let redis_down = integration_tests::own_cache("redis://127.0.0.1:1/");
    let d = Delivery::with(&[("chatgpt", &product.url)], RETRY, Default::default(), Some(redis_down)).await;
    let f = d.fanout(&t.store);

    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let others =
        [sign_in(&t.store, "alice", ClientKind::MobileApp).await, sign_in(&t.store, "alice", ClientKind::Cli).await];
    let revoked = service::revoke_all(
        &t.store,
        &d.policy,
        &caller(&me.token),
        &Subject::Own,
        RevokeScope::Others,
        None,
        service::now_ms(),
    )
    .await
    .unwrap();
    assert_eq!(revoked.revoked, 2);

    // The watermark's record: the sweep runs although the caches can't be told.
    let watermark = stream_event(&t).await;
    let res = revocation_fanout::handle(&f, watermark.clone()).await;
    assert!(res.batch_item_failures.is_empty(), "Redis down fails nothing: {res:?}");
    for o in &others {
        let item = t.get("USER#alice", &format!("SESSION#{}", o.session_id)).await.unwrap();
        assert_eq!(s(&item, "Status"), "revoked", "swept");
    }
    // The sweep's records: each product is told of each session.
    let mut swept = stream_event(&t).await;
    swept.records.retain(|r| !watermark.records.iter().any(|w| w.change.sequence_number == r.change.sequence_number));
    let res = revocation_fanout::handle(&f, swept).await;
    assert!(res.batch_item_failures.is_empty(), "{res:?}");
    let mut told: Vec<String> = product.received().into_iter().map(|r| r.sid).collect();
    told.sort();
    let mut expected: Vec<String> = others.iter().map(|o| o.session_id.to_string()).collect();
    expected.sort();
    assert_eq!(told, expected);
}

/// Each event in the audit trail carries its receipts in numbers: a revoke-one's over its session,
/// a revoke-all's over every session its sweep revoked, complete once all let go and the sweep is
/// done.
#[tokio::test]
async fn events_carry_the_receipts_of_what_they_revoked() {
    let t = TestTable::new().await;
    let product = StandInProduct::start(Duration::ZERO, 0).await;
    let d = Delivery::new(&[("chatgpt", &product.url)], RETRY).await;
    let f = d.fanout(&t.store);
    let policy = &d.policy;
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let one = sign_in(&t.store, "alice", ClientKind::MobileApp).await;
    sign_in(&t.store, "alice", ClientKind::DesktopApp).await;
    sign_in(&t.store, "alice", ClientKind::Browser).await;
    let now = service::now_ms();
    service::revoke_session(&t.store, policy, &caller(&me.token), &Subject::Own, one.session_id, now).await.unwrap();
    service::revoke_all(&t.store, policy, &caller(&me.token), &Subject::Own, RevokeScope::Others, None, now + 1)
        .await
        .unwrap();
    let token = SessionToken::parse(&me.token).unwrap();
    let list =
        || service::list_events(&t.store, policy, &token, &Subject::Own, Default::default(), None, service::now_ms());
    // Before the fan-out: no receipts kept yet for the revoke-all (not swept), none told for the one.
    let before = list().await.unwrap();
    let one_before = before.events[1].receipts.clone().expect("the revoked session's tombstone");
    assert_eq!((one_before.sessions, one_before.products, one_before.completed_at.clone()), (1, 0, None));
    // The fan-out: the revoke's record and the watermark's (the sweep), then the sweep's records.
    assert!(revocation_fanout::handle(&f, stream_event(&t).await).await.batch_item_failures.is_empty());
    assert!(revocation_fanout::handle(&f, stream_event(&t).await).await.batch_item_failures.is_empty());
    let after = list().await.unwrap();
    let all = after.events[0].receipts.clone().expect("the revoke-all's receipts");
    assert_eq!((after.events[0].scope, all.sessions, all.products, all.delivered), (AuditScope::Others, 2, 2, 2));
    assert!(all.completed_at.is_some(), "{all:?}");
    let one_after = after.events[1].receipts.clone().unwrap();
    assert_eq!((one_after.sessions, one_after.delivered, one_after.pending), (1, 1, 0));
    assert!(one_after.completed_at.is_some());
}

/// A product slower than the inline budget is handed to the queue: the record is done within the
/// budget (the shard is not held), the fast product is told at once, and the slow one is told by
/// the queue's consumer, which waits for its answer.
#[tokio::test]
async fn a_slow_product_holds_neither_the_record_nor_the_others() {
    let t = TestTable::new().await;
    let fast = StandInProduct::start(Duration::ZERO, 0).await;
    let slow = StandInProduct::start(Duration::from_secs(2), 0).await;
    let d = Delivery::new(&[("chatgpt", &fast.url), ("api-console", &slow.url)], RETRY).await;
    let f = d.fanout(&t.store);
    let target = revoke_one(&t).await;
    let started = std::time::Instant::now();
    let res = revocation_fanout::handle(&f, stream_event(&t).await).await;
    let held = started.elapsed();
    assert!(res.batch_item_failures.is_empty(), "{res:?}");
    assert!(held < Duration::from_millis(1_500), "the record waited {held:?} for the slow product");
    assert_eq!(fast.received().len(), 1);
    let receipts = t.store.receipts(&user("alice"), target).await.unwrap();
    assert_eq!(receipts["chatgpt"].status, DeliveryStatus::Delivered);
    assert_eq!(
        (receipts["api-console"].status, receipts["api-console"].error.as_deref()),
        (DeliveryStatus::Pending, Some("timeout"))
    );
    let tally = d.queue.pump_until(&d.courier(&t.store), Duration::from_secs(8), |t| t.delivered == 1).await;
    assert_eq!(tally.delivered, 1, "{tally:?}");
    let receipts = t.store.receipts(&user("alice"), target).await.unwrap();
    assert_eq!((receipts["api-console"].status, receipts["api-console"].attempts), (DeliveryStatus::Delivered, 2));
}

/// A product still failing at the horizon is given up on: `failed`, and nothing left queued.
#[tokio::test]
async fn a_product_still_down_at_the_horizon_is_failed() {
    let t = TestTable::new().await;
    let down = StandInProduct::start(Duration::ZERO, usize::MAX).await;
    let short = RetryPolicy { horizon_ms: 2_500, ..RETRY };
    let d = Delivery::new(&[("codex", &down.url)], short).await;
    let target = revoke_one(&t).await;
    assert!(revocation_fanout::handle(&d.fanout(&t.store), stream_event(&t).await)
        .await
        .batch_item_failures
        .is_empty());
    let tally = d.queue.pump_until(&d.courier(&t.store), Duration::from_secs(10), |t| t.failed == 1).await;
    assert_eq!(tally.failed, 1, "{tally:?}");
    let receipt = t.store.receipts(&user("alice"), target).await.unwrap()["codex"].clone();
    assert_eq!(receipt.status, DeliveryStatus::Failed, "{receipt:?}");
    assert!(receipt.attempts >= 3, "retried with backoff before giving up: {receipt:?}");
    assert_eq!(receipt.error.as_deref(), Some("http_500"));
    assert_eq!(down.received().len(), receipt.attempts as usize);
    assert_eq!(d.queue.depth().await, (0, 0, 0), "nothing left queued");
}

/// SQS delivers a message at least once: the same retry handled twice, one after the other and at
/// once, advances the receipt once, and its failure queues one next step that counts (a second
/// chain would double every later attempt).
#[tokio::test]
async fn a_retry_delivered_twice_advances_once_and_starts_no_second_chain() {
    let t = TestTable::new().await;
    let product = StandInProduct::start(Duration::from_millis(100), 0).await;
    product.set_down(true);
    let d = Delivery::new(&[("codex", &product.url)], RETRY).await;
    let target = revoke_one(&t).await;
    assert!(revocation_fanout::handle(&d.fanout(&t.store), stream_event(&t).await)
        .await
        .batch_item_failures
        .is_empty());
    assert_eq!(product.received().len(), 1);
    // The queued retry, as the consumer would receive it, handled by two instances at once.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let messages = local_stack::sqs::receive(&d.queue.sqs, &d.queue.url, 10, 2).await.unwrap();
    assert_eq!(messages.len(), 1);
    let event = local_stack::sqs::lambda_event(&messages, "arn:aws:sqs:us-east-1:000000000000:q", "us-east-1");
    let event = || serde_json::from_value(event.clone()).unwrap();
    let courier = d.courier(&t.store);
    let ((_, a), (_, b)) =
        tokio::join!(logout_retry::handle(&courier, event()), logout_retry::handle(&courier, event()));
    assert_eq!((a.retrying + b.retrying, a.stale + b.stale), (1, 1), "{a:?} {b:?}");
    let receipt = t.store.receipts(&user("alice"), target).await.unwrap()["codex"].clone();
    assert_eq!((receipt.status, receipt.attempts), (DeliveryStatus::Pending, 2));
    // Both queued a next step; the receipt names one. The product comes back: the step it names is
    // delivered, the other is dropped without a request.
    local_stack::sqs::delete_done(&d.queue.sqs, &d.queue.url, &messages, &[]).await.unwrap();
    product.set_down(false);
    let posted = product.received().len();
    let tally = d.queue.pump_until(&courier, Duration::from_secs(8), |t| t.delivered + t.stale == 2).await;
    assert_eq!((tally.delivered, tally.stale), (1, 1), "{tally:?}");
    assert_eq!(product.received().len(), posted + 1, "the stale step made no request");
    let receipt = t.store.receipts(&user("alice"), target).await.unwrap()["codex"].clone();
    assert_eq!((receipt.status, receipt.attempts), (DeliveryStatus::Delivered, 3));
    // Once more, after it was delivered: stale, no request.
    let (_, again) = logout_retry::handle(&courier, event()).await;
    assert_eq!((again.stale, product.received().len()), (1, posted + 1));
    let _ = RetryMessage::from_body(messages[0].body().unwrap()).expect("the consumer's own format");
}
