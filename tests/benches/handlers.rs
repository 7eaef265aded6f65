//! Handler latency next to the raw DynamoDB operation each wraps, on DynamoDB Local, in one run.
//! Run with `infra/bench.sh` (it starts DynamoDB Local). Prints medians, p99s and ratios.
//!
//! - list: `list-sessions` handler on a user with 20 sessions vs the raw Query it runs.
//! - revoke-one: `revoke-session` handler vs the raw conditional UpdateItem it runs.
//! - revoke-all N=1, 50, 500: `revoke-all-sessions` handler vs the raw watermark UpdateItem, and
//!   N=500 vs N=1 (the critical path must not grow with N).

use std::time::{Duration, Instant};

use active_sessions::domain::ClientKind;
use active_sessions::testing::{request, sign_in, with_path, with_query, SignedIn};
use active_sessions::{service, Policy};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use futures::stream::{self, StreamExt};
use integration_tests::TestTable;

struct Stats {
    median: Duration,
    p99: Duration,
    n: usize,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let n = samples.len();
    let at = |q: f64| samples[((n as f64 * q).ceil() as usize).clamp(1, n) - 1];
    Stats { median: at(0.5), p99: at(0.99), n }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn row(name: &str, s: &Stats) {
    println!("{name:<44} n={:<4} median {:>7.3} ms   p99 {:>7.3} ms", s.n, ms(s.median), ms(s.p99));
}

fn ratio(name: &str, a: &Stats, b: &Stats, target: f64) {
    let r = ms(a.median) / ms(b.median);
    let verdict = if r <= target { "ok" } else { "OVER TARGET" };
    println!("  ratio {name:<40} {r:>5.2}x   (target <= {target}x: {verdict})");
}

async fn time<F, Fut>(iterations: usize, mut f: F) -> Stats
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for i in 0..3 {
        f(usize::MAX - i).await; // warm-up (connections, JIT in DynamoDB Local)
    }
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let start = Instant::now();
        f(i).await;
        samples.push(start.elapsed());
    }
    stats(samples)
}

async fn sessions(t: &TestTable, user: &str, n: usize) -> Vec<SignedIn> {
    stream::iter(0..n).map(|_| sign_in(&t.store, user, ClientKind::Browser)).buffer_unordered(16).collect().await
}

fn key(user: &str, sid: &str) -> std::collections::HashMap<String, AttributeValue> {
    [("PK", format!("USER#{user}")), ("SK", format!("SESSION#{sid}"))]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), AttributeValue::S(v)))
        .collect()
}

#[tokio::main]
async fn main() {
    let iterations: usize = std::env::var("BENCH_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let t = TestTable::new().await;
    let client = t.store.client().clone();
    let policy = Policy::default();
    println!("Active Sessions handler benchmark on DynamoDB Local ({iterations} iterations per row)\n");

    // ---- list: 20 sessions.
    let listed = sessions(&t, "bench-list", 20).await;
    let token = listed[0].token.clone();
    let handler_list = time(iterations, |_| {
        let req = request("GET", "/v1/sessions", Some(&token));
        let store = &t.store;
        async move {
            let res = list_sessions::handle(store, req).await;
            assert_eq!(res.status(), 200);
        }
    })
    .await;
    let raw_query = time(iterations, |_| {
        let q = client
            .query()
            .table_name(&t.name)
            .key_condition_expression("PK = :pk AND begins_with(SK, :p)")
            .expression_attribute_values(":pk", AttributeValue::S("USER#bench-list".into()))
            .expression_attribute_values(":p", AttributeValue::S("SESSION#".into()))
            .scan_index_forward(false)
            .consistent_read(true)
            .limit(19);
        async move {
            let out = q.send().await.expect("query");
            assert_eq!(out.count, 19);
        }
    })
    .await;
    println!("list (20 sessions)");
    row("  handler GET /v1/sessions", &handler_list);
    row("  raw Query (what it wraps)", &raw_query);
    ratio("handler / raw Query", &handler_list, &raw_query, 1.5);

    // ---- revoke one: a fresh target each iteration.
    let me = sign_in(&t.store, "bench-revoke", ClientKind::Browser).await;
    let targets = sessions(&t, "bench-revoke", iterations + 3).await;
    let raw_targets = sessions(&t, "bench-revoke-raw", iterations + 3).await;
    let mut next = 0;
    let handler_revoke = time(iterations, |_| {
        let id = targets[next].session_id.to_string();
        next += 1;
        let req = with_path(request("DELETE", "/v1/sessions/x", Some(&me.token)), &[("id", &id)]);
        let (store, policy) = (&t.store, &policy);
        async move {
            assert_eq!(revoke_session::handle(store, policy, req).await.status(), 204);
        }
    })
    .await;
    let mut next = 0;
    let raw_revoke = time(iterations, |_| {
        let id = raw_targets[next].session_id.to_string();
        next += 1;
        let now = service::now_ms();
        let u = client
            .update_item()
            .table_name(&t.name)
            .set_key(Some(key("bench-revoke-raw", &id)))
            .update_expression("SET #s = :r, RevokedAt = :at, RevokedBy = :by, RevokeReason = :why, ExpiresAt = :exp")
            .condition_expression("attribute_exists(PK) AND #s = :a AND ExpiresAt > :now")
            .expression_attribute_names("#s", "Status")
            .expression_attribute_values(":r", AttributeValue::S("revoked".into()))
            .expression_attribute_values(":a", AttributeValue::S("active".into()))
            .expression_attribute_values(":at", AttributeValue::N(now.to_string()))
            .expression_attribute_values(":by", AttributeValue::S("user:bench".into()))
            .expression_attribute_values(":why", AttributeValue::S("user_logout".into()))
            .expression_attribute_values(":exp", AttributeValue::N((now / 1000 + 86_400).to_string()))
            .expression_attribute_values(":now", AttributeValue::N((now / 1000).to_string()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        async move {
            u.send().await.expect("update");
        }
    })
    .await;
    println!("\nrevoke one");
    row("  handler DELETE /v1/sessions/{id}", &handler_revoke);
    row("  raw conditional UpdateItem", &raw_revoke);
    ratio("handler / raw UpdateItem", &handler_revoke, &raw_revoke, 1.5);

    // ---- revoke all, N = 1, 50, 500 (scope=others keeps the caller, so every iteration does the
    // same reads and writes on the same N sessions).
    let raw_watermark = time(iterations, |_| {
        let now = service::now_ms();
        let u = client
            .update_item()
            .table_name(&t.name)
            .key("PK", AttributeValue::S("USER#bench-raw-watermark".into()))
            .key("SK", AttributeValue::S("PROFILE".into()))
            .update_expression("SET #t = :t, RevokedBefore = :b, WatermarkAt = :b, WatermarkBy = :by, WatermarkReason = :why REMOVE RevokeKeep")
            .condition_expression("attribute_not_exists(RevokedBefore) OR RevokedBefore < :b")
            .expression_attribute_names("#t", "Type")
            .expression_attribute_values(":t", AttributeValue::S("PROFILE".into()))
            .expression_attribute_values(":b", AttributeValue::N(now.to_string()))
            .expression_attribute_values(":by", AttributeValue::S("user:bench".into()))
            .expression_attribute_values(":why", AttributeValue::S("user_logout_all".into()));
        async move {
            // Two iterations may share a millisecond; the condition then refuses, as in the product.
            let _ = u.send().await;
        }
    })
    .await;
    println!("\nrevoke all");
    row("  raw watermark UpdateItem", &raw_watermark);
    let mut by_n = Vec::new();
    for n in [1usize, 50, 500] {
        let user = format!("bench-all-{n}");
        let signed = sessions(&t, &user, n).await;
        let caller = signed[0].token.clone();
        let iters = if n >= 500 { iterations / 2 } else { iterations };
        let s = time(iters, |_| {
            let req = with_query(request("DELETE", "/v1/sessions", Some(&caller)), &[("scope", "others")]);
            let store = &t.store;
            async move {
                let res = revoke_all_sessions::handle(store, req).await;
                assert_eq!(res.status(), 200);
            }
        })
        .await;
        row(&format!("  handler DELETE /v1/sessions, N={n}"), &s);
        by_n.push((n, s));
    }
    for (n, s) in &by_n {
        ratio(&format!("handler N={n} / raw watermark write"), s, &raw_watermark, 1.5);
    }
    ratio("handler N=500 / handler N=1", &by_n[2].1, &by_n[0].1, 2.0);
}
