//! The fan-out under a slow product: one 100-record batch of revocations (real stream records
//! from DynamoDB Local) handed to `revocation-fanout`, with two stand-in products, one answering
//! at once and one delaying every answer by 2 s. It prints the batch time and the fast product's
//! delivery times from the batch's start (p50, p99), next to a run with the fast product alone
//! and to the raw DynamoDB write (one UpdateItem) measured in the same run.
//!
//! Run with `infra/bench.sh fanout` (it starts DynamoDB Local and the local SQS). `BENCH_RECORDS`
//! (100) and `BENCH_SLOW_MS` (2000) change the batch and the delay.

use std::time::{Duration, Instant};

use active_sessions::domain::{ClientKind, UserId};
use active_sessions::model::{Actor, Revocation, RevokeReason};
use active_sessions::store::SessionsStore;
use active_sessions::testing::sign_in_with;
use active_sessions::Policy;
use aws_lambda_events::event::dynamodb::Event;
use integration_tests::{Delivery, StandInProduct, TestTable};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// A table with `n` revoked sessions; returns it, the revocation batch and the raw writes' times.
async fn revoked_batch(n: usize) -> (TestTable, Event, Vec<Duration>) {
    let t = TestTable::new().await;
    let policy = Policy { max_sessions: 10_000, ..Policy::default() };
    let user = UserId::parse("bench").unwrap();
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(sign_in_with(&t.store, &policy, "bench", ClientKind::Browser).await.session_id);
    }
    let mut raw = Vec::new();
    for id in ids {
        let revocation = Revocation {
            at_ms: active_sessions::service::now_ms(),
            actor: Actor::User,
            actor_id: "bench".into(),
            reason: RevokeReason::UserLogout,
            source_ip: None,
        };
        let started = Instant::now();
        t.store.revoke_session(&user, id, &revocation, 3600, None).await.expect("revoke");
        raw.push(started.elapsed());
    }
    let records: Vec<serde_json::Value> =
        t.lambda_stream_records().await.into_iter().filter(|r| r["eventName"] == "MODIFY").collect();
    assert_eq!(records.len(), n, "one MODIFY per revocation");
    let event = serde_json::from_value(serde_json::json!({ "Records": records })).expect("event");
    (t, event, raw)
}

async fn run(n: usize, slow: Option<Duration>) -> (Duration, Vec<Duration>, Vec<Duration>) {
    let (t, event, raw) = revoked_batch(n).await;
    let fast = StandInProduct::start(Duration::ZERO, 0).await;
    let slow_product = match slow {
        Some(delay) => Some(StandInProduct::start(delay, 0).await),
        None => None,
    };
    let mut products = vec![("chatgpt", fast.url.as_str())];
    if let Some(s) = &slow_product {
        products.push(("slow-product", s.url.as_str()));
    }
    let d = Delivery::new(&products, active_sessions::logout::RetryPolicy::default()).await;
    let f = d.fanout(&t.store);
    let started = Instant::now();
    let response = revocation_fanout::handle(&f, event).await;
    let batch = started.elapsed();
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let mut fast_times: Vec<Duration> = fast.received().iter().map(|r| r.at - started).collect();
    fast_times.sort();
    assert_eq!(fast_times.len(), n);
    // The slow product does not answer within the inline budget (its circuit opens after a few):
    // the retry queue has each of its deliveries.
    if slow_product.is_some() {
        let (visible, in_flight, delayed) = d.queue.depth().await;
        assert_eq!(visible + in_flight + delayed, n as u64, "each slow delivery is owed");
    }
    (batch, fast_times, raw)
}

#[tokio::main]
async fn main() {
    let n = env("BENCH_RECORDS", 100) as usize;
    let slow = Duration::from_millis(env("BENCH_SLOW_MS", 2000));
    // A first round warms DynamoDB Local, the HTTP client and the signer; it is not counted.
    run(n, None).await;
    let (alone_batch, alone, _) = run(n, None).await;
    let (batch, fast, mut raw) = run(n, Some(slow)).await;
    raw.sort();
    let raw_p50 = percentile(&raw, 0.5);
    println!("fan-out, {n}-record batch, real stream records from DynamoDB Local");
    println!("  raw DynamoDB UpdateItem (one soft revoke): p50 {}", ms(raw_p50));
    println!(
        "  fast product alone:        batch {}, delivered p50 {}, p99 {}",
        ms(alone_batch),
        ms(percentile(&alone, 0.5)),
        ms(percentile(&alone, 0.99))
    );
    println!(
        "  fast + slow ({} ms) product: batch {}, fast delivered p50 {}, p99 {}",
        slow.as_millis(),
        ms(batch),
        ms(percentile(&fast, 0.5)),
        ms(percentile(&fast, 0.99))
    );
    println!(
        "  fast p99 with the slow product / alone: {:.2}x; fast p50 / raw UpdateItem p50: {:.1}x",
        percentile(&fast, 0.99).as_secs_f64() / percentile(&alone, 0.99).as_secs_f64(),
        percentile(&fast, 0.5).as_secs_f64() / raw_p50.as_secs_f64()
    );
}
