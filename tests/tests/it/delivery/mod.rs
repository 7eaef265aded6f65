//! Delivery at scale: receipts, retries, isolation and expiry, each case as a test (DynamoDB Local,
//! real stream records, the retry queue on the local SQS, stand-in products over HTTP).

use std::sync::Arc;
use std::time::Duration;

use active_sessions::breaker::BreakerConfig;
use active_sessions::domain::{ClientKind, UserId};
use active_sessions::logout::RetryPolicy;
use active_sessions::model::DeliveryStatus;
use active_sessions::queue::{RetryMessage, RetryQueue};
use active_sessions::service::{self, Caller, RevokeScope, Subject};
use active_sessions::store::{ReceiptsStore, SessionsStore};
use active_sessions::testing::{sign_in, sign_in_with, ChaosStore};
use active_sessions::token::SessionToken;
use active_sessions::{DynamoStore, Policy};
use aws_lambda_events::event::dynamodb::Event;
use integration_tests::{Delivery, StandInProduct, TestTable};

mod horizon;

fn caller(token: &str) -> Caller {
    Caller { token: SessionToken::parse(token).unwrap(), source_ip: None }
}

fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

async fn stream_event(t: &TestTable) -> Event {
    serde_json::from_value(serde_json::json!({ "Records": t.lambda_stream_records().await })).expect("event")
}

/// The stream's records after the first `skip`.
async fn stream_after(t: &TestTable, skip: usize) -> Event {
    let mut records = t.lambda_stream_records().await;
    records.drain(..skip.min(records.len()));
    serde_json::from_value(serde_json::json!({ "Records": records })).expect("event")
}

const RETRY: RetryPolicy = RetryPolicy {
    horizon_ms: 3_600_000,
    backoff_ms: 1_000,
    max_backoff_ms: 2_000,
    inline_budget: Duration::from_millis(250),
};

/// The same table through a second client, whose calls a test can make fail.
async fn chaos(t: &TestTable) -> ChaosStore<DynamoStore> {
    let store = DynamoStore::from_env(&t.name, &integration_tests::test_timeouts()).await;
    ChaosStore::new(Arc::new(store), 7)
}

/// One revoked session of alice's, through the real service; its id.
async fn revoke_one(t: &TestTable) -> active_sessions::domain::SessionId {
    revoke_one_with(t, &Policy::default()).await
}

/// The same, under `policy` (its tombstone lifetime).
async fn revoke_one_with(t: &TestTable, policy: &Policy) -> active_sessions::domain::SessionId {
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let phone = sign_in(&t.store, "alice", ClientKind::MobileApp).await;
    service::revoke_session(&t.store, policy, &caller(&me.token), &Subject::Own, phone.session_id, service::now_ms())
        .await
        .unwrap();
    phone.session_id
}

/// A healthy product that answers in 500 ms, told of a sweep of 100 sessions with a 1 s inline
/// budget: every request is sent within its budget.
#[tokio::test]
async fn a_healthy_product_is_not_timed_out_by_its_own_queue() {
    let t = TestTable::new().await;
    let product = StandInProduct::start(Duration::from_millis(500), 0).await;
    let retry = RetryPolicy { inline_budget: Duration::from_millis(1_000), ..RETRY };
    let mut d = Delivery::new(&[("chatgpt", &product.url)], retry).await;
    d.policy = Policy { max_sessions: 200, ..Policy::default() };
    let f = d.fanout(&t.store);
    let me = sign_in_with(&t.store, &d.policy, "alice", ClientKind::Browser).await;
    for _ in 0..100 {
        sign_in_with(&t.store, &d.policy, "alice", ClientKind::MobileApp).await;
    }
    service::revoke_all(
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
    let seen = t.lambda_stream_records().await.len();
    assert!(revocation_fanout::handle(&f, stream_event(&t).await).await.batch_item_failures.is_empty());
    let mut sweep = stream_after(&t, seen).await;
    // The sweep's own records (the revoke-all's event marked swept is ignored by the fan-out).
    sweep.records.retain(|r| {
        serde_json::to_value(&r.change.keys)
            .is_ok_and(|k| k["SK"]["S"].as_str().is_some_and(|sk| sk.starts_with("SESSION#")))
    });
    assert_eq!(sweep.records.len(), 100);
    assert!(revocation_fanout::handle(&f, sweep).await.batch_item_failures.is_empty());
    let states = t.store.session_states(&user("alice")).await.unwrap();
    let mut not_delivered = Vec::new();
    for st in states.iter().filter(|s| !s.active) {
        let r = t.store.receipts(&user("alice"), st.session_id).await.unwrap()["chatgpt"].clone();
        if r.status != DeliveryStatus::Delivered {
            not_delivered.push(r);
        }
    }
    assert!(
        not_delivered.is_empty(),
        "{} timed out before they were sent: {:?}",
        not_delivered.len(),
        not_delivered.first()
    );
    assert_eq!(product.received().len(), 100);
}

/// A failed `record_caches_invalidated` fails the record, so that the receipt can still complete.
#[tokio::test]
async fn a_failed_cache_receipt_fails_the_record() {
    let t = TestTable::new().await;
    let store = chaos(&t).await;
    let d = Delivery::new(&[], RETRY).await;
    revoke_one(&t).await;
    store.fail("record_caches_invalidated");
    let res = revocation_fanout::handle(&d.fanout(&store), stream_event(&t).await).await;
    assert_eq!(res.batch_item_failures.len(), 1, "the record must be delivered again: {res:?}");
    store.heal("record_caches_invalidated");
    let res = revocation_fanout::handle(&d.fanout(&store), stream_event(&t).await).await;
    assert!(res.batch_item_failures.is_empty());
}

/// The fan-out's receipt write fails after the retry was queued: the redelivered record starts no
/// second chain.
#[tokio::test]
async fn a_failed_receipt_write_in_the_fan_out_starts_no_second_chain() {
    let t = TestTable::new().await;
    let store = chaos(&t).await;
    let down = StandInProduct::start(Duration::ZERO, 0).await;
    down.set_down(true);
    let d = Delivery::new(&[("codex", &down.url)], RETRY).await;
    let target = revoke_one(&t).await;
    let event = stream_event(&t).await;
    store.fail("advance_receipt");
    let first = revocation_fanout::handle(&d.fanout(&store), event.clone()).await;
    assert_eq!(first.batch_item_failures.len(), 1, "the step was not recorded: the record fails");
    store.heal("advance_receipt");
    let again = revocation_fanout::handle(&d.fanout(&store), event).await;
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(down.received().len(), 2, "the first attempt, made again");
    // Two messages are queued; the receipt names one. Each comes due once: one is the chain's next
    // attempt, the other is dropped without a request.
    let courier = d.courier(&t.store);
    let tally = d.queue.pump_until(&courier, Duration::from_secs(6), |t| t.retrying + t.stale == 2).await;
    assert_eq!((tally.retrying, tally.stale), (1, 1), "{tally:?}");
    assert_eq!(down.received().len(), 3);
    let receipt = t.store.receipts(&user("alice"), target).await.unwrap()["codex"].clone();
    assert_eq!((receipt.status, receipt.attempts), (DeliveryStatus::Pending, 2));
    let owed = d.queue.depth().await;
    assert_eq!(owed.0 + owed.1 + owed.2, 1, "one chain of retries: {owed:?}");
}

/// The consumer's receipt write fails between queuing the next step and recording it: SQS
/// delivers the message again, and it still starts no second chain.
#[tokio::test]
async fn a_failed_receipt_write_in_a_retry_starts_no_second_chain() {
    let t = TestTable::new().await;
    let store = chaos(&t).await;
    let down = StandInProduct::start(Duration::ZERO, 0).await;
    down.set_down(true);
    let d = Delivery::new(&[("codex", &down.url)], RETRY).await;
    let target = revoke_one(&t).await;
    assert!(revocation_fanout::handle(&d.fanout(&t.store), stream_event(&t).await)
        .await
        .batch_item_failures
        .is_empty());
    store.fail("advance_receipt");
    let failing = d.courier(&store);
    let tally = d.queue.pump_until(&failing, Duration::from_secs(5), |t| t.errors == 1).await;
    assert_eq!(tally.errors, 1, "reported failed, so that SQS delivers it again: {tally:?}");
    store.heal("advance_receipt");
    // The failed message comes back after its visibility timeout (1 s); the orphaned next step is
    // dropped when it comes due.
    let courier = d.courier(&t.store);
    let tally = d.queue.pump_until(&courier, Duration::from_secs(8), |t| t.retrying + t.stale == 2).await;
    assert_eq!((tally.retrying, tally.stale), (1, 1), "{tally:?}");
    let receipt = t.store.receipts(&user("alice"), target).await.unwrap()["codex"].clone();
    assert_eq!((receipt.status, receipt.attempts), (DeliveryStatus::Pending, 2), "{receipt:?}");
    let owed = d.queue.depth().await;
    assert_eq!(owed.0 + owed.1 + owed.2, 1, "one chain of retries: {owed:?}");
}

/// The fan-out queued the retry but its receipt write failed, and the record was never redelivered
/// (the stream mapping gave up on it): the message finds the receipt still where it was queued
/// from, and takes the step from there, so the delivery is not left with nothing to retry it.
#[tokio::test]
async fn a_message_whose_link_was_never_recorded_takes_the_step() {
    let t = TestTable::new().await;
    let store = chaos(&t).await;
    let product = StandInProduct::start(Duration::ZERO, 0).await;
    product.set_down(true);
    let d = Delivery::new(&[("codex", &product.url)], RETRY).await;
    let target = revoke_one(&t).await;
    store.fail("advance_receipt");
    let first = revocation_fanout::handle(&d.fanout(&store), stream_event(&t).await).await;
    assert_eq!(first.batch_item_failures.len(), 1, "the step was not recorded: the record fails");
    let receipt = t.store.receipts(&user("alice"), target).await.unwrap()["codex"].clone();
    assert_eq!((receipt.attempts, receipt.link), (0, None), "the receipt never named the message");
    // The record is not handed over again. The product comes back; the message comes due.
    product.set_down(false);
    let courier = d.courier(&t.store);
    let tally = d.queue.pump_until(&courier, Duration::from_secs(6), |t| t.delivered + t.stale == 1).await;
    assert_eq!((tally.delivered, tally.stale), (1, 0), "{tally:?}");
    let receipt = t.store.receipts(&user("alice"), target).await.unwrap()["codex"].clone();
    assert_eq!((receipt.status, receipt.attempts), (DeliveryStatus::Delivered, 2), "{receipt:?}");
    assert_eq!(product.received().len(), 2, "the fan-out's attempt and the message's");
}

/// A retry's queue send fails: nothing advances (the receipt still names the message being
/// handled), the message is reported failed, and SQS delivers it again.
#[tokio::test]
async fn a_failed_send_leaves_the_receipt_and_fails_the_item() {
    struct Refusing;
    impl RetryQueue for Refusing {
        async fn send(&self, _: &RetryMessage, _: Duration) -> Result<(), active_sessions::queue::QueueError> {
            Err(active_sessions::queue::QueueError("refused".into()))
        }
    }
    let t = TestTable::new().await;
    let down = StandInProduct::start(Duration::ZERO, 0).await;
    down.set_down(true);
    let d = Delivery::new(&[("codex", &down.url)], RETRY).await;
    let target = revoke_one(&t).await;
    // The fan-out's own send fails: the record fails, and the receipt is not advanced.
    let f = revocation_fanout::handler::Fanout {
        store: &t.store,
        policy: &d.policy,
        cache: &d.cache,
        backchannel: &d.backchannel,
        queue: &Refusing,
        guards: &d.guards,
        retry: &d.retry,
    };
    let res = revocation_fanout::handle(&f, stream_event(&t).await).await;
    assert_eq!(res.batch_item_failures.len(), 1);
    let receipt = t.store.receipts(&user("alice"), target).await.unwrap()["codex"].clone();
    assert_eq!((receipt.status, receipt.attempts, receipt.link), (DeliveryStatus::Pending, 0, None));
    assert_eq!(d.queue.depth().await, (0, 0, 0));
}

/// A store error while retrying is not silent: the message is reported failed and delivered again.
#[tokio::test]
async fn a_store_error_in_a_retry_fails_the_item_and_it_comes_back() {
    let t = TestTable::new().await;
    let store = chaos(&t).await;
    let flaky = StandInProduct::start(Duration::ZERO, 1).await;
    let d = Delivery::new(&[("codex", &flaky.url)], RETRY).await;
    let target = revoke_one(&t).await;
    assert!(revocation_fanout::handle(&d.fanout(&t.store), stream_event(&t).await)
        .await
        .batch_item_failures
        .is_empty());
    store.fail("receipts");
    let tally = d.queue.pump_until(&d.courier(&store), Duration::from_secs(5), |t| t.errors == 1).await;
    assert_eq!(tally.errors, 1, "{tally:?}");
    store.heal("receipts");
    let tally = d.queue.pump_until(&d.courier(&t.store), Duration::from_secs(5), |t| t.delivered == 1).await;
    assert_eq!(tally.delivered, 1, "{tally:?}");
    let receipt = t.store.receipts(&user("alice"), target).await.unwrap()["codex"].clone();
    assert_eq!((receipt.status, receipt.attempts), (DeliveryStatus::Delivered, 2));
}

/// One unreadable message does not stop the others, and ends in the dead-letter queue.
#[tokio::test]
async fn a_corrupt_message_goes_to_the_dead_letter_queue_and_stops_nothing() {
    let t = TestTable::new().await;
    let flaky = StandInProduct::start(Duration::ZERO, 1).await;
    let d = Delivery::new(&[("codex", &flaky.url)], RETRY).await;
    let target = revoke_one(&t).await;
    d.queue.sqs.send_message().queue_url(&d.queue.url).message_body(r#"{"v":1,"user":"al"#).send().await.unwrap();
    assert!(revocation_fanout::handle(&d.fanout(&t.store), stream_event(&t).await)
        .await
        .batch_item_failures
        .is_empty());
    let courier = d.courier(&t.store);
    let tally = d.queue.pump_until(&courier, Duration::from_secs(10), |t| t.delivered == 1 && t.corrupt >= 3).await;
    assert_eq!(tally.delivered, 1, "{tally:?}");
    assert_eq!(tally.corrupt, 3, "received three times (maxReceiveCount), then moved");
    assert_eq!(t.store.receipts(&user("alice"), target).await.unwrap()["codex"].status, DeliveryStatus::Delivered);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while d.queue.dead_letters().await == 0 && std::time::Instant::now() < deadline {
        d.queue.pump(&courier).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(d.queue.dead_letters().await, 1, "the corrupt message is in the dead-letter queue");
}
