//! Receipts: over many revocations on the local stack, with stand-in products configured by
//! `infra/bench.sh receipts` (a fast one, `fast`; one that answers every delivery after 2 s,
//! `slow`; one that answers 503 to each session's first two deliveries, `flaky`), the time from a
//! revoke call returning to:
//! - `caches_invalidated_at` on the tombstone (L2 deleted, validators told);
//! - the fast product's `delivered_at`;
//! - `complete` (every configured product `delivered`: the latest `delivered_at`);
//!
//! then how many receipts are still not `delivered` once the retry horizon has passed (the bench
//! waits for it). Medians and p99 in ms, and beside them the median of a raw DynamoDB UpdateItem
//! on the same table, measured in the same run, as the machine's yardstick.
//!
//! `BENCH_SESSIONS` (500) revocations at `BENCH_RATE` (10) per second; `BENCH_PRODUCTS` the
//! configured products (comma-separated, as in BACKCHANNEL_ENDPOINTS); `BENCH_HORIZON_SECONDS`
//! (the stack's LOGOUT_RETRY_HORIZON_SECONDS).

use std::time::{Duration, Instant};

use active_sessions::domain::{ClientKind, UserId};
use active_sessions::model::DeliveryStatus;
use active_sessions::service::now_ms;
use active_sessions::testing::{sign_in, SignedIn};
use active_sessions::SessionStore;
use futures::stream::{self, StreamExt};
use integration_tests::{e2e_base_url, TestTable};

const PER_USER: usize = 25;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn quantiles(mut xs: Vec<i64>) -> Option<(i64, i64, i64)> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_unstable();
    let at = |q: f64| xs[((xs.len() as f64 * q).ceil() as usize).clamp(1, xs.len()) - 1];
    Some((at(0.5), at(0.99), *xs.last().unwrap()))
}

fn line(name: &str, xs: Vec<i64>, raw_ms: f64) {
    let n = xs.len();
    match quantiles(xs) {
        Some((p50, p99, max)) => println!(
            "  {name:<34} n={n:<4} p50 {p50:>6} ms  p99 {p99:>6} ms  max {max:>6} ms   p50/raw {:>7.1}x",
            p50 as f64 / raw_ms
        ),
        None => println!("  {name:<34} none"),
    }
}

/// The median of `n` raw UpdateItems on the table (one attribute on one item).
async fn raw_update_ms(t: &TestTable, n: usize) -> f64 {
    use aws_sdk_dynamodb::types::AttributeValue;
    let mut xs = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        t.store
            .client()
            .update_item()
            .table_name(t.name.as_str())
            .key("PK", AttributeValue::S("BENCH#raw".into()))
            .key("SK", AttributeValue::S("RAW".into()))
            .update_expression("SET N = :n")
            .expression_attribute_values(":n", AttributeValue::N(i.to_string()))
            .send()
            .await
            .expect("raw UpdateItem");
        xs.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    xs.sort_by(f64::total_cmp);
    xs[n / 2]
}

struct Revoked {
    user: UserId,
    target: SignedIn,
    /// Epoch ms when the revoke call returned.
    returned_at: i64,
}

#[tokio::main]
async fn main() {
    let sessions = env_num("BENCH_SESSIONS", 500) as usize;
    let horizon = Duration::from_secs(env_num("BENCH_HORIZON_SECONDS", 60));
    let products: Vec<String> = std::env::var("BENCH_PRODUCTS")
        .unwrap_or_else(|_| "fast,slow,flaky".into())
        .split(',')
        .map(str::to_owned)
        .collect();
    let base = e2e_base_url();
    let table = TestTable::e2e().await;
    let http = reqwest::Client::new();
    println!(
        "Receipts on the local stack: {sessions} revocations, products {products:?}, horizon {}s",
        horizon.as_secs()
    );

    let tag = active_sessions::domain::SessionId::new().to_string().to_lowercase();
    let mut targets: Vec<(UserId, SignedIn, SignedIn)> = Vec::with_capacity(sessions);
    for u in 0..sessions.div_ceil(PER_USER) {
        let user = format!("receipts-{tag}-{u}");
        let me = sign_in(&table.store, &user, ClientKind::Browser).await;
        let n = PER_USER.min(sessions - targets.len());
        let signed: Vec<SignedIn> = stream::iter(0..n)
            .map(|_| sign_in(&table.store, &user, ClientKind::MobileApp))
            .buffer_unordered(64)
            .collect()
            .await;
        let id = UserId::parse(&user).unwrap();
        targets.extend(signed.into_iter().map(|s| (id.clone(), me.clone(), s)));
    }

    // The revokes, through the API, at a steady rate (DynamoDB Local serialises writes: a faster
    // burst measures its queue, not the fan-out).
    let rate = env_num("BENCH_RATE", 10).max(1);
    let started = Instant::now();
    let revoked: Vec<Revoked> = stream::iter(targets.into_iter().enumerate())
        .map(|(i, (user, me, target))| {
            let at = tokio::time::Instant::from_std(started) + Duration::from_micros(i as u64 * 1_000_000 / rate);
            let (http, base) = (&http, &base);
            async move {
                tokio::time::sleep_until(at).await;
                let res = http
                    .delete(format!("{base}/v1/sessions/{}", target.session_id))
                    .bearer_auth(&me.token)
                    .send()
                    .await
                    .expect("revoke");
                assert_eq!(res.status(), 204);
                Revoked { user, target, returned_at: now_ms() }
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let last_revoke = Instant::now();
    println!("  {sessions} revokes in {:.1} s (BENCH_RATE {rate}/s)", started.elapsed().as_secs_f64());

    // Wait for every receipt to settle (delivered or failed), or the horizon past the last revoke.
    let settled = |r: &std::collections::BTreeMap<String, active_sessions::model::ProductReceipt>| {
        products.iter().all(|p| r.get(p).is_some_and(|x| x.status != DeliveryStatus::Pending))
    };
    let deadline = last_revoke + horizon + Duration::from_secs(5);
    loop {
        let mut open = 0;
        for r in &revoked {
            if !settled(&table.store.receipts(&r.user, r.target.session_id).await.expect("receipts")) {
                open += 1;
            }
        }
        if open == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let (mut caches, mut fast, mut complete) = (Vec::new(), Vec::new(), Vec::new());
    let (mut not_delivered, mut flaky_delivered, mut flaky_total) = (0, 0, 0);
    for r in &revoked {
        let sk = format!("SESSION#{}", r.target.session_id);
        let item = table.get(&format!("USER#{}", r.user.as_str()), &sk).await.expect("tombstone");
        if let Some(at) =
            item.get("CachesInvalidatedAt").and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok())
        {
            caches.push(at - r.returned_at);
        }
        let receipts = table.store.receipts(&r.user, r.target.session_id).await.expect("receipts");
        if let Some(at) = receipts.get("fast").and_then(|x| x.delivered_at) {
            fast.push(at - r.returned_at);
        }
        let delivered: Vec<i64> =
            products.iter().filter_map(|p| receipts.get(p).and_then(|x| x.delivered_at)).collect();
        if delivered.len() == products.len() {
            complete.push(delivered.iter().max().unwrap() - r.returned_at);
        }
        not_delivered +=
            products.iter().filter(|p| receipts.get(*p).is_none_or(|x| x.status != DeliveryStatus::Delivered)).count();
        if products.iter().any(|p| p == "flaky") {
            flaky_total += 1;
            flaky_delivered +=
                usize::from(receipts.get("flaky").is_some_and(|x| x.status == DeliveryStatus::Delivered));
        }
    }
    let raw = raw_update_ms(&table, 200).await;
    println!("  raw DynamoDB UpdateItem (same table, same run): p50 {raw:.2} ms");
    line("revoke returned -> caches invalidated", caches, raw);
    let fast_p99 = quantiles(fast.clone()).map(|q| q.1);
    line("revoke returned -> fast delivered", fast, raw);
    line("revoke returned -> complete", complete, raw);
    println!("  receipts not delivered after the horizon: {not_delivered} (of {})", revoked.len() * products.len());
    if flaky_total > 0 {
        println!("  flaky product delivered: {flaky_delivered} of {flaky_total}");
    }
    let ok = fast_p99.is_some_and(|p| p <= 1000) && not_delivered == 0 && flaky_delivered == flaky_total;
    println!(
        "  targets (fast p99 <= 1000 ms, 0 not delivered, flaky always delivered): {}",
        if ok { "met" } else { "NOT MET" }
    );
}
