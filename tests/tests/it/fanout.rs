//! The fan-out's effects are independent (DynamoDB Local, real stream records, stand-in products
//! over HTTP): one product down or slow neither blocks, delays nor repeats another and never fails
//! the stream record; it is retried from the ledger (with the same `jti`) until the horizon, then
//! given up on; overlapping drains post each retry once; and Redis down stops nothing.

use std::time::Duration;

use active_sessions::cache::{CacheConfig, TokenCache};
use active_sessions::domain::{ClientKind, UserId};
use active_sessions::logout::RetryPolicy;
use active_sessions::model::{AuditScope, DeliveryStatus};
use active_sessions::service::{self, Caller, RevokeScope, Subject};
use active_sessions::store::RetryLedger;
use active_sessions::testing::sign_in;
use active_sessions::token::SessionToken;
use active_sessions::{Policy, SessionStore};
use aws_lambda_events::event::dynamodb::Event;
use integration_tests::{backchannel, s, StandInProduct, TestTable};
use revocation_fanout::handler::Fanout;

fn caller(token: &str) -> Caller {
    Caller { token: SessionToken::parse(token).unwrap(), source_ip: None }
}

/// The table's stream so far, as one Lambda event.
async fn stream_event(t: &TestTable) -> Event {
    serde_json::from_value(serde_json::json!({ "Records": t.lambda_stream_records().await })).expect("event")
}

fn redis_down() -> CacheConfig {
    // Nothing listens on port 1: every Redis call fails at once.
    integration_tests::own_cache("redis://127.0.0.1:1/")
}

fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

/// Retries after 100 ms, then 200 ms, ...; the first attempt waits 300 ms at most.
const RETRY: RetryPolicy = RetryPolicy {
    horizon_ms: 3_600_000,
    backoff_ms: 100,
    max_backoff_ms: 1_000,
    inline_budget: Duration::from_millis(300),
    lease_ms: 120_000,
    batch: 500,
    run_budget: Duration::from_secs(40),
};

/// #12 (3): on main, one product's 500 failed the whole stream record, and the redelivery (which
/// holds the shard) was what retried it. Now the record succeeds; the product is the ledger's.
#[tokio::test]
async fn a_failing_product_is_retried_from_the_ledger_without_failing_the_record() {
    let t = TestTable::new().await;
    let policy = Policy::default();
    let fast = StandInProduct::start(Duration::ZERO, 0).await;
    let flaky = StandInProduct::start(Duration::ZERO, 1).await;
    let bc = backchannel(&[("chatgpt", &fast.url), ("codex", &flaky.url)]);
    let cache = TokenCache::new(&CacheConfig::default()).await.unwrap();
    let f = Fanout { store: &t.store, policy: &policy, cache: &cache, backchannel: &bc, retry: &RETRY };

    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let phone = sign_in(&t.store, "alice", ClientKind::MobileApp).await;
    let target = phone.session_id;
    service::revoke_session(&t.store, &policy, &caller(&me.token), &Subject::Own, phone.session_id, service::now_ms())
        .await
        .unwrap();
    let event = stream_event(&t).await;

    let first = revocation_fanout::handle(&f, event.clone()).await;
    assert!(first.batch_item_failures.is_empty(), "a product's failure never fails the record: {first:?}");
    assert_eq!(fast.received().len(), 1);
    assert_eq!(flaky.received().iter().map(|r| r.status).collect::<Vec<_>>(), vec![500]);
    // The receipts on the tombstone (#12): the caches, one product delivered, one pending.
    let receipts = t.store.receipts(&user("alice"), target).await.unwrap();
    assert_eq!((receipts["chatgpt"].status, receipts["chatgpt"].attempts), (DeliveryStatus::Delivered, 1));
    assert_eq!((receipts["codex"].status, receipts["codex"].attempts), (DeliveryStatus::Pending, 1));
    assert_eq!(receipts["codex"].error.as_deref(), Some("http_500"), "the class, never the body");
    let tombstone = t.get("USER#alice", &format!("SESSION#{target}")).await.unwrap();
    assert!(tombstone.contains_key("CachesInvalidatedAt"));
    let owed = t.store.due_retries(i64::MAX / 2, 10).await.unwrap();
    assert_eq!(owed.iter().map(|e| (e.aud.as_str(), e.session)).collect::<Vec<_>>(), vec![("codex", target)]);

    // Lambda delivers the record again (say a later write failed): products tried already are not
    // posted to again; the ledger has them.
    let again = revocation_fanout::handle(&f, event).await;
    assert!(again.batch_item_failures.is_empty(), "{again:?}");
    assert_eq!((fast.received().len(), flaky.received().len()), (1, 1));

    // The drain, once the retry is due: the product is told again, with the same jti.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let report = service::drain(&t.store, &bc, &RETRY, service::now_ms()).await.unwrap();
    assert_eq!((report.due, report.delivered), (1, 1), "{report:?}");
    let attempts = flaky.received();
    assert_eq!(attempts.iter().map(|r| r.status).collect::<Vec<_>>(), vec![500, 200]);
    assert_eq!(attempts[0].jti, attempts[1].jti, "a retry carries the same jti");
    assert_eq!(attempts[0].sid, target.to_string());
    assert_eq!(fast.received().len(), 1, "a product told already is not told twice");
    let receipts = t.store.receipts(&user("alice"), target).await.unwrap();
    assert_eq!((receipts["codex"].status, receipts["codex"].attempts), (DeliveryStatus::Delivered, 2));
    assert_eq!(receipts["chatgpt"].attempts, 1, "not tried again");
    assert!(t.store.due_retries(i64::MAX / 2, 10).await.unwrap().is_empty(), "the ledger is settled");
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
    let policy = Policy::default();
    let product = StandInProduct::start(Duration::ZERO, 0).await;
    let bc = backchannel(&[("chatgpt", &product.url)]);
    let cache = TokenCache::new(&redis_down()).await.unwrap();
    let f = Fanout { store: &t.store, policy: &policy, cache: &cache, backchannel: &bc, retry: &RETRY };

    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let others =
        [sign_in(&t.store, "alice", ClientKind::MobileApp).await, sign_in(&t.store, "alice", ClientKind::Cli).await];
    let revoked = service::revoke_all(
        &t.store,
        &policy,
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

/// #12: each event in the audit trail carries its receipts in numbers: a revoke-one's over its
/// session, a revoke-all's over every session its sweep revoked, complete once all let go.
#[tokio::test]
async fn events_carry_the_receipts_of_what_they_revoked() {
    let t = TestTable::new().await;
    let policy = Policy::default();
    let product = StandInProduct::start(Duration::ZERO, 0).await;
    let bc = backchannel(&[("chatgpt", &product.url)]);
    let cache = TokenCache::new(&CacheConfig::default()).await.unwrap();
    let f = Fanout { store: &t.store, policy: &policy, cache: &cache, backchannel: &bc, retry: &RETRY };
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let one = sign_in(&t.store, "alice", ClientKind::MobileApp).await;
    sign_in(&t.store, "alice", ClientKind::DesktopApp).await;
    sign_in(&t.store, "alice", ClientKind::Browser).await;
    let now = service::now_ms();
    service::revoke_session(&t.store, &policy, &caller(&me.token), &Subject::Own, one.session_id, now).await.unwrap();
    service::revoke_all(&t.store, &policy, &caller(&me.token), &Subject::Own, RevokeScope::Others, None, now + 1)
        .await
        .unwrap();
    let token = SessionToken::parse(&me.token).unwrap();
    let list =
        || service::list_events(&t.store, &policy, &token, &Subject::Own, Default::default(), None, service::now_ms());
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

/// #12 (3): a product slower than the inline budget is handed to the ledger: the record is done
/// within the budget (the shard is not held), the fast product is told at once, and the slow one
/// is told by the drain, which waits for its answer.
#[tokio::test]
async fn a_slow_product_holds_neither_the_record_nor_the_others() {
    let t = TestTable::new().await;
    let policy = Policy::default();
    let fast = StandInProduct::start(Duration::ZERO, 0).await;
    let slow = StandInProduct::start(Duration::from_secs(2), 0).await;
    let bc = backchannel(&[("chatgpt", &fast.url), ("api-console", &slow.url)]);
    let cache = TokenCache::new(&CacheConfig::default()).await.unwrap();
    let f = Fanout { store: &t.store, policy: &policy, cache: &cache, backchannel: &bc, retry: &RETRY };
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let phone = sign_in(&t.store, "alice", ClientKind::MobileApp).await;
    service::revoke_session(&t.store, &policy, &caller(&me.token), &Subject::Own, phone.session_id, service::now_ms())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let res = revocation_fanout::handle(&f, stream_event(&t).await).await;
    let held = started.elapsed();
    assert!(res.batch_item_failures.is_empty(), "{res:?}");
    assert!(held < Duration::from_millis(1_500), "the record waited {held:?} for the slow product");
    assert_eq!(fast.received().len(), 1);
    let receipts = t.store.receipts(&user("alice"), phone.session_id).await.unwrap();
    assert_eq!(receipts["chatgpt"].status, DeliveryStatus::Delivered);
    assert_eq!(
        (receipts["api-console"].status, receipts["api-console"].error.as_deref()),
        (DeliveryStatus::Pending, Some("timeout"))
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    let report = service::drain(&t.store, &bc, &RETRY, service::now_ms()).await.unwrap();
    assert_eq!(report.delivered, 1, "{report:?}");
    let receipts = t.store.receipts(&user("alice"), phone.session_id).await.unwrap();
    assert_eq!((receipts["api-console"].status, receipts["api-console"].attempts), (DeliveryStatus::Delivered, 2));
}

/// #12 (3): a product still failing at the horizon is given up on: `failed`, off the ledger.
#[tokio::test]
async fn a_product_still_down_at_the_horizon_is_failed() {
    let t = TestTable::new().await;
    let policy = Policy::default();
    let down = StandInProduct::start(Duration::ZERO, usize::MAX).await;
    let bc = backchannel(&[("codex", &down.url)]);
    let cache = TokenCache::new(&CacheConfig::default()).await.unwrap();
    let short = RetryPolicy { horizon_ms: 700, ..RETRY };
    let f = Fanout { store: &t.store, policy: &policy, cache: &cache, backchannel: &bc, retry: &short };
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let phone = sign_in(&t.store, "alice", ClientKind::MobileApp).await;
    service::revoke_session(&t.store, &policy, &caller(&me.token), &Subject::Own, phone.session_id, service::now_ms())
        .await
        .unwrap();
    assert!(revocation_fanout::handle(&f, stream_event(&t).await).await.batch_item_failures.is_empty());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let receipt = loop {
        service::drain(&t.store, &bc, &short, service::now_ms()).await.unwrap();
        let receipt = t.store.receipts(&user("alice"), phone.session_id).await.unwrap()["codex"].clone();
        if receipt.status != DeliveryStatus::Pending || std::time::Instant::now() > deadline {
            break receipt;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(receipt.status, DeliveryStatus::Failed, "{receipt:?}");
    assert!(receipt.attempts >= 3, "retried with backoff before giving up: {receipt:?}");
    assert_eq!(receipt.error.as_deref(), Some("http_500"));
    assert_eq!(down.received().len(), receipt.attempts as usize);
    assert!(t.store.due_retries(i64::MAX / 2, 10).await.unwrap().is_empty(), "off the ledger");
}

/// #12 (3): two drains at once (a schedule overlapping a slow run) post each retry once: the
/// lease decides which drain tries an entry.
#[tokio::test]
async fn overlapping_drains_post_each_retry_once() {
    let t = TestTable::new().await;
    let policy = Policy::default();
    let product = StandInProduct::start(Duration::from_millis(100), 0).await;
    let bc = backchannel(&[("codex", &product.url)]);
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let mut owed = Vec::new();
    for _ in 0..12 {
        let s = sign_in(&t.store, "alice", ClientKind::MobileApp).await;
        service::revoke_session(&t.store, &policy, &caller(&me.token), &Subject::Own, s.session_id, service::now_ms())
            .await
            .unwrap();
        t.store
            .record_caches_invalidated(&user("alice"), s.session_id, service::now_ms(), &["codex".into()])
            .await
            .unwrap();
        let entry = active_sessions::store::RetryEntry {
            user: user("alice"),
            session: s.session_id,
            aud: "codex".into(),
            due_at: service::now_ms(),
            give_up_at: service::now_ms() + 60_000,
        };
        t.store.schedule_retry(&entry).await.unwrap();
        owed.push(s.session_id.to_string());
    }
    let now = service::now_ms();
    let (a, b) = tokio::join!(service::drain(&t.store, &bc, &RETRY, now), service::drain(&t.store, &bc, &RETRY, now));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.delivered + b.delivered, 12, "{a:?} {b:?}");
    let mut told: Vec<String> = product.received().into_iter().map(|r| r.sid).collect();
    told.sort();
    owed.sort();
    assert_eq!(told, owed, "each session told exactly once");
}

/// Entries a dead drain still holds (their lease not yet over) never crowd out the others: on
/// main, a Query limited to N returned the N earliest, leased or not.
#[tokio::test]
async fn leased_entries_do_not_crowd_out_the_rest() {
    let t = TestTable::new().await;
    let now = service::now_ms();
    let entry = |i: i64| active_sessions::store::RetryEntry {
        user: user("alice"),
        session: active_sessions::domain::SessionId::new(),
        aud: "codex".into(),
        due_at: now - 1_000 + i,
        give_up_at: now + 60_000,
    };
    let entries: Vec<_> = (0..3).map(entry).collect();
    for e in &entries {
        t.store.schedule_retry(e).await.unwrap();
    }
    // A drain claimed the two earliest and died.
    for e in &entries[..2] {
        assert!(t.store.claim_retry(e, now, now + 120_000).await.unwrap());
    }
    let due = t.store.due_retries(now, 1).await.unwrap();
    assert_eq!(due, vec![entries[2].clone()], "the free entry, not a leased one");
    // Once the lease is over, they are due again.
    assert_eq!(t.store.due_retries(now + 130_000, 10).await.unwrap().len(), 3);
}
