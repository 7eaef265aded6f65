//! Defects of the delivery path found by a reading of main (DynamoDB Local, real stream records,
//! stand-in products over HTTP). Written against main's API first, to see each fail.

use std::sync::Arc;
use std::time::Duration;

use active_sessions::cache::{CacheConfig, TokenCache};
use active_sessions::domain::{ClientKind, UserId};
use active_sessions::logout::RetryPolicy;
use active_sessions::model::DeliveryStatus;
use active_sessions::service::{self, Caller, RevokeScope, Subject};
use active_sessions::store::RetryLedger;
use active_sessions::testing::{sign_in, sign_in_with, ChaosStore};
use active_sessions::token::SessionToken;
use active_sessions::{DynamoStore, Policy, SessionStore};
use aws_lambda_events::event::dynamodb::Event;
use integration_tests::{backchannel, StandInProduct, TestTable};
use revocation_fanout::handler::Fanout;

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
    backoff_ms: 100,
    max_backoff_ms: 1_000,
    inline_budget: Duration::from_millis(250),
    lease_ms: 120_000,
    batch: 500,
    run_budget: Duration::from_secs(40),
};

async fn chaos(t: &TestTable) -> ChaosStore<DynamoStore> {
    // The same table through a second client: the wrapper needs its own Arc.
    let store = DynamoStore::from_env(&t.name, &integration_tests::test_timeouts()).await;
    ChaosStore::new(Arc::new(store), 7)
}

/// A healthy product that answers in 150 ms, told of a sweep of 100 sessions: every request must
/// be sent within its budget. On main, the budget included the wait for the product's 32-permit
/// gate, so the third wave timed out without being sent.
#[tokio::test]
async fn a_healthy_product_is_not_timed_out_by_its_own_queue() {
    let t = TestTable::new().await;
    let policy = Policy { max_sessions: 200, ..Policy::default() };
    let product = StandInProduct::start(Duration::from_millis(150), 0).await;
    let bc = backchannel(&[("chatgpt", &product.url)]);
    let cache = TokenCache::new(&CacheConfig::default()).await.unwrap();
    let f = Fanout { store: &t.store, policy: &policy, cache: &cache, backchannel: &bc, retry: &RETRY };
    let me = sign_in_with(&t.store, &policy, "alice", ClientKind::Browser).await;
    for _ in 0..100 {
        sign_in_with(&t.store, &policy, "alice", ClientKind::MobileApp).await;
    }
    service::revoke_all(
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
    let seen = t.lambda_stream_records().await.len();
    assert!(revocation_fanout::handle(&f, stream_event(&t).await).await.batch_item_failures.is_empty());
    let sweep = stream_after(&t, seen).await;
    assert_eq!(sweep.records.len(), 100);
    assert!(revocation_fanout::handle(&f, sweep).await.batch_item_failures.is_empty());
    let states = t.store.session_states(&user("alice")).await.unwrap();
    let mut timed_out = 0;
    for st in states.iter().filter(|s| !s.active) {
        let r = &t.store.receipts(&user("alice"), st.session_id).await.unwrap()["chatgpt"];
        if r.status != DeliveryStatus::Delivered {
            timed_out += 1;
        }
    }
    assert_eq!(timed_out, 0, "a healthy product's requests timed out before they were sent");
}

/// A failed `record_caches_invalidated` must fail the record, so that the receipt can still
/// complete. On main it was only logged.
#[tokio::test]
async fn a_failed_cache_receipt_fails_the_record() {
    let t = TestTable::new().await;
    let policy = Policy::default();
    let store = chaos(&t).await;
    let cache = TokenCache::new(&CacheConfig::default()).await.unwrap();
    let bc = active_sessions::logout::Backchannel::disabled();
    let f = Fanout { store: &store, policy: &policy, cache: &cache, backchannel: &bc, retry: &RETRY };
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let phone = sign_in(&t.store, "alice", ClientKind::MobileApp).await;
    service::revoke_session(&t.store, &policy, &caller(&me.token), &Subject::Own, phone.session_id, service::now_ms())
        .await
        .unwrap();
    store.fail("record_caches_invalidated");
    let res = revocation_fanout::handle(&f, stream_event(&t).await).await;
    assert_eq!(res.batch_item_failures.len(), 1, "the record must be delivered again: {res:?}");
}

/// A receipt write that fails after the retry was scheduled: the redelivered record must not start
/// a second retry chain. On main, the redelivery posted again and wrote a second ledger entry.
#[tokio::test]
async fn a_failed_receipt_write_does_not_start_a_second_chain() {
    let t = TestTable::new().await;
    let policy = Policy::default();
    let store = chaos(&t).await;
    let down = StandInProduct::start(Duration::ZERO, usize::MAX).await;
    let bc = backchannel(&[("codex", &down.url)]);
    let cache = TokenCache::new(&CacheConfig::default()).await.unwrap();
    let f = Fanout { store: &store, policy: &policy, cache: &cache, backchannel: &bc, retry: &RETRY };
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let phone = sign_in(&t.store, "alice", ClientKind::MobileApp).await;
    service::revoke_session(&t.store, &policy, &caller(&me.token), &Subject::Own, phone.session_id, service::now_ms())
        .await
        .unwrap();
    let event = stream_event(&t).await;
    store.fail("record_receipt");
    let first = revocation_fanout::handle(&f, event.clone()).await;
    assert_eq!(first.batch_item_failures.len(), 1);
    store.heal("record_receipt");
    let again = revocation_fanout::handle(&f, event).await;
    assert!(again.batch_item_failures.is_empty());
    let chains = t.store.due_retries(i64::MAX / 2, 10).await.unwrap();
    assert_eq!(chains.len(), 1, "one chain of retries per product: {chains:?}");
}

/// A store error while retrying must not let the run succeed quietly. On main, the drain counted
/// it and returned success.
#[tokio::test]
async fn a_store_error_in_a_retry_is_not_silent() {
    let t = TestTable::new().await;
    let policy = Policy::default();
    let store = chaos(&t).await;
    let product = StandInProduct::start(Duration::ZERO, 0).await;
    let bc = backchannel(&[("codex", &product.url)]);
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let phone = sign_in(&t.store, "alice", ClientKind::MobileApp).await;
    service::revoke_session(&t.store, &policy, &caller(&me.token), &Subject::Own, phone.session_id, service::now_ms())
        .await
        .unwrap();
    t.store
        .record_caches_invalidated(&user("alice"), phone.session_id, service::now_ms(), &["codex".into()])
        .await
        .unwrap();
    let entry = active_sessions::store::RetryEntry {
        user: user("alice"),
        session: phone.session_id,
        aud: "codex".into(),
        due_at: service::now_ms(),
        give_up_at: service::now_ms() + 60_000,
    };
    t.store.schedule_retry(&entry).await.unwrap();
    store.fail("record_receipt");
    let run = logout_retry::handle(&store, &bc, &RETRY).await;
    assert!(run.is_err(), "a retry whose outcome was not recorded must fail the run: {run:?}");
}

/// One unreadable entry must not stop the others. On main, one item that did not parse failed
/// every drain.
#[tokio::test]
async fn one_corrupt_entry_does_not_stop_the_others() {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    let t = TestTable::new().await;
    let policy = Policy::default();
    let product = StandInProduct::start(Duration::ZERO, 0).await;
    let bc = backchannel(&[("codex", &product.url)]);
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let phone = sign_in(&t.store, "alice", ClientKind::MobileApp).await;
    service::revoke_session(&t.store, &policy, &caller(&me.token), &Subject::Own, phone.session_id, service::now_ms())
        .await
        .unwrap();
    t.store
        .record_caches_invalidated(&user("alice"), phone.session_id, service::now_ms(), &["codex".into()])
        .await
        .unwrap();
    let now = service::now_ms();
    let entry = active_sessions::store::RetryEntry {
        user: user("alice"),
        session: phone.session_id,
        aud: "codex".into(),
        due_at: now,
        give_up_at: now + 60_000,
    };
    t.store.schedule_retry(&entry).await.unwrap();
    t.put(
        [
            ("PK".to_owned(), A::S("LOGOUT_RETRY".into())),
            ("SK".to_owned(), A::S(format!("{:015}#corrupt", now - 10))),
            ("Aud".to_owned(), A::N("12".into())),
        ]
        .into(),
    )
    .await;
    let _ = service::drain(&t.store, &bc, &RETRY, service::now_ms()).await;
    assert_eq!(product.received().len(), 1, "the good entry must be tried");
}

/// A revoke-all's summary must complete only once its sweep has. On main, a partial sweep whose
/// swept sessions were all told read as complete.
#[tokio::test]
async fn a_revoke_all_summary_completes_only_once_swept() {
    let t = TestTable::new().await;
    let policy = Policy::default();
    let product = StandInProduct::start(Duration::ZERO, 0).await;
    let bc = backchannel(&[("chatgpt", &product.url)]);
    let cache = TokenCache::new(&CacheConfig::default()).await.unwrap();
    let f = Fanout { store: &t.store, policy: &policy, cache: &cache, backchannel: &bc, retry: &RETRY };
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let a = sign_in(&t.store, "alice", ClientKind::MobileApp).await;
    sign_in(&t.store, "alice", ClientKind::DesktopApp).await;
    let now = service::now_ms();
    service::revoke_all(&t.store, &policy, &caller(&me.token), &Subject::Own, RevokeScope::Others, None, now)
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
    t.store.revoke_session(&user("alice"), a.session_id, &revocation, policy.tombstone_secs, None).await.unwrap();
    assert!(revocation_fanout::handle(&f, stream_after(&t, seen).await).await.batch_item_failures.is_empty());
    let token = SessionToken::parse(&me.token).unwrap();
    let events =
        service::list_events(&t.store, &policy, &token, &Subject::Own, Default::default(), None, service::now_ms())
            .await
            .unwrap();
    let summary = events.events[0].receipts.clone().expect("receipts");
    assert_eq!(summary.sessions, 1);
    assert_eq!(summary.completed_at, None, "one of two sessions swept is not complete: {summary:?}");
}

/// The tombstone carries the receipts: it must outlive the retry horizon, whatever
/// `TOMBSTONE_TTL_SECONDS` says. On main, a short tombstone TTL dropped what was still owed.
#[tokio::test]
async fn the_tombstone_outlives_the_retry_horizon() {
    let t = TestTable::new().await;
    let policy = Policy { tombstone_secs: 60, ..Policy::default() };
    let down = StandInProduct::start(Duration::ZERO, usize::MAX).await;
    let bc = backchannel(&[("codex", &down.url)]);
    let cache = TokenCache::new(&CacheConfig::default()).await.unwrap();
    let f = Fanout { store: &t.store, policy: &policy, cache: &cache, backchannel: &bc, retry: &RETRY };
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let phone = sign_in(&t.store, "alice", ClientKind::MobileApp).await;
    let now = service::now_ms();
    service::revoke_session(&t.store, &policy, &caller(&me.token), &Subject::Own, phone.session_id, now).await.unwrap();
    assert!(revocation_fanout::handle(&f, stream_event(&t).await).await.batch_item_failures.is_empty());
    let item = t.get("USER#alice", &format!("SESSION#{}", phone.session_id)).await.unwrap();
    let expires: i64 = integration_tests::s(&item, "ExpiresAt").parse().unwrap();
    assert!(expires >= now / 1000 + RETRY.horizon_ms / 1000, "the tombstone ends at {expires}, before the horizon");
}

/// When TTL removes a session that was still active, every product is told, through the same
/// path and retries. On main, the fan-out told no product.
#[tokio::test]
async fn an_expired_session_is_logged_out_of_every_product() {
    let t = TestTable::new().await;
    let policy = Policy::default();
    let product = StandInProduct::start(Duration::ZERO, 0).await;
    let bc = backchannel(&[("chatgpt", &product.url)]);
    let cache = TokenCache::new(&CacheConfig::default()).await.unwrap();
    let f = Fanout { store: &t.store, policy: &policy, cache: &cache, backchannel: &bc, retry: &RETRY };
    let path = format!("{}/functions/revocation-fanout/tests/fixtures/remove-ttl.json", integration_tests::repo_root());
    let event: Event = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(revocation_fanout::handle(&f, event).await.batch_item_failures.is_empty());
    let told: Vec<String> = product.received().into_iter().map(|r| r.sid).collect();
    assert_eq!(told, vec!["01M8CPVF8A7ZAP09JVSBBWZEQF".to_owned()]);
}

/// A hanging product costs the others nothing: a healthy product's retry is made at once although
/// many of a hanging product's are due first. On main, the drain's slots filled with the hanging
/// product's entries waiting for its gate.
#[tokio::test]
async fn a_hanging_product_holds_no_other_products_retry() {
    let t = TestTable::new().await;
    let policy = Policy::default();
    let hanging = StandInProduct::start(Duration::from_secs(3), 0).await;
    let healthy = StandInProduct::start(Duration::ZERO, 0).await;
    let bc = backchannel(&[("codex", &hanging.url), ("chatgpt", &healthy.url)]);
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let now = service::now_ms();
    let phone = sign_in(&t.store, "alice", ClientKind::MobileApp).await;
    service::revoke_session(&t.store, &policy, &caller(&me.token), &Subject::Own, phone.session_id, now).await.unwrap();
    t.store
        .record_caches_invalidated(&user("alice"), phone.session_id, now, &["codex".into(), "chatgpt".into()])
        .await
        .unwrap();
    for i in 0..200 {
        let entry = active_sessions::store::RetryEntry {
            user: user("alice"),
            session: active_sessions::domain::SessionId::new(),
            aud: "codex".into(),
            due_at: now - 10_000 + i,
            give_up_at: now + 60_000,
        };
        t.store.schedule_retry(&entry).await.unwrap();
    }
    let entry = active_sessions::store::RetryEntry {
        user: user("alice"),
        session: phone.session_id,
        aud: "chatgpt".into(),
        due_at: now - 1_000,
        give_up_at: now + 60_000,
    };
    t.store.schedule_retry(&entry).await.unwrap();
    let started = std::time::Instant::now();
    let drain = tokio::spawn(async move {
        let _ = service::drain(&t.store, &bc, &RETRY, service::now_ms()).await;
    });
    let deadline = started + Duration::from_secs(2);
    while healthy.received().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drain.abort();
    assert_eq!(healthy.received().len(), 1, "the healthy product waited behind the hanging one");
    assert!(started.elapsed() < Duration::from_secs(1), "told after {:?}", started.elapsed());
}

/// A delivery owed to a product is written to no partition shared by every user. On main, every
/// owed delivery went to the one `LOGOUT_RETRY` partition, whose sort key only grows: its write
/// rate grew with total load (about 1 000 writes/s per partition at most).
#[tokio::test]
async fn owed_deliveries_write_to_no_shared_partition() {
    let t = TestTable::new().await;
    let policy = Policy::default();
    let down = StandInProduct::start(Duration::ZERO, usize::MAX).await;
    let bc = backchannel(&[("codex", &down.url)]);
    let cache = TokenCache::new(&CacheConfig::default()).await.unwrap();
    let f = Fanout { store: &t.store, policy: &policy, cache: &cache, backchannel: &bc, retry: &RETRY };
    for u in ["alice", "bob"] {
        let me = sign_in(&t.store, u, ClientKind::Browser).await;
        let phone = sign_in(&t.store, u, ClientKind::MobileApp).await;
        service::revoke_session(
            &t.store,
            &policy,
            &caller(&me.token),
            &Subject::Own,
            phone.session_id,
            service::now_ms(),
        )
        .await
        .unwrap();
    }
    assert!(revocation_fanout::handle(&f, stream_event(&t).await).await.batch_item_failures.is_empty());
    let shared: Vec<String> = t
        .items()
        .await
        .iter()
        .map(|item| integration_tests::s(item, "PK"))
        .filter(|pk| !pk.starts_with("USER#") && !pk.starts_with("WORKSPACE#"))
        .collect();
    assert!(shared.is_empty(), "written outside the users' own partitions: {shared:?}");
}
