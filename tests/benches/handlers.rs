//! Handler latency next to the raw DynamoDB operations it wraps, on DynamoDB Local, in one run.
//! Run with `infra/bench.sh` (it starts DynamoDB Local). Prints medians, p99s and ratios.
//!
//! The variants of each row group are interleaved (one of each per round, in rotating order)
//! after a warm-up, so drift on a noisy machine and DynamoDB Local's JIT warm-up hit all alike.
//!
//! - list: `list-sessions` on a user with 20 sessions vs the raw Query it runs, and vs its raw
//!   requests (the validation read, then the Query), and what running them in parallel saved.
//! - revoke one: `revoke-session` vs the raw TransactWriteItems it wraps (the conditional soft
//!   revoke and its audit event), and vs its raw requests (validation read, then the transaction).
//! - revoke all, N = 1, 50, 500: `revoke-all-sessions` vs the raw TransactWriteItems it wraps (the
//!   watermark and its audit event), and vs its raw requests (validation read, COUNT Query, then
//!   the transaction); and N=500 vs N=1.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use active_sessions::domain::ClientKind;
use active_sessions::testing::{request, sign_in_with, with_path, with_query, SignedIn};
use active_sessions::{service, Policy};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, Select, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use futures::future::BoxFuture;
use futures::stream::{self, StreamExt};
use integration_tests::TestTable;

const WARM_UP: usize = 30;

#[derive(Clone, Copy)]
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

type Variant<'a> = (&'a str, Box<dyn FnMut() -> BoxFuture<'a, ()> + 'a>);

/// Runs the variants round-robin (rotating who goes first), prints a row each, returns the stats.
async fn measure<'a>(iterations: usize, mut variants: Vec<Variant<'a>>) -> Vec<Stats> {
    let k = variants.len();
    let mut samples = vec![Vec::with_capacity(iterations); k];
    for round in 0..WARM_UP + iterations {
        for j in 0..k {
            let i = (round + j) % k;
            let start = Instant::now();
            (variants[i].1)().await;
            if round >= WARM_UP {
                samples[i].push(start.elapsed());
            }
        }
    }
    let out: Vec<Stats> = samples.into_iter().map(stats).collect();
    for ((name, _), s) in variants.iter().zip(&out) {
        println!("  {name:<46} n={:<4} median {:>7.3} ms   p99 {:>7.3} ms", s.n, ms(s.median), ms(s.p99));
    }
    out
}

fn ratio(name: &str, a: Stats, b: Stats, target: f64) {
    let r = ms(a.median) / ms(b.median);
    let verdict = if r <= target { "met" } else { "NOT MET" };
    println!("  ratio {name:<44} {r:>5.2}x   (target <= {target}x: {verdict})");
}

/// The benchmark signs hundreds of sessions in for one user: no session limit here.
fn roomy() -> Policy {
    Policy { max_sessions: 100_000, ..Policy::default() }
}

async fn sign_in(store: &active_sessions::DynamoStore, user: &str, client: ClientKind) -> SignedIn {
    sign_in_with(store, &roomy(), user, client).await
}

async fn sessions(t: &TestTable, user: &str, n: usize) -> Vec<SignedIn> {
    stream::iter(0..n).map(|_| sign_in(&t.store, user, ClientKind::Browser)).buffer_unordered(16).collect().await
}

fn key(user: &str, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("PK".to_owned(), AttributeValue::S(format!("USER#{user}"))),
        ("SK".to_owned(), AttributeValue::S(sk.to_owned())),
    ])
}

/// The read validation makes: session and profile (and, for revoke-one, the target session) in
/// one strongly consistent BatchGetItem.
async fn raw_auth(client: &Client, table: &str, user: &str, sid: &str) {
    raw_auth_with(client, table, user, sid, None).await
}

async fn raw_auth_with(client: &Client, table: &str, user: &str, sid: &str, target: Option<&str>) {
    let mut keys = KeysAndAttributes::builder().keys(key(user, &format!("SESSION#{sid}"))).keys(key(user, "PROFILE"));
    if let Some(t) = target {
        keys = keys.keys(key(user, &format!("SESSION#{t}")));
    }
    let keys = keys.consistent_read(true).build().expect("keys");
    client.batch_get_item().request_items(table, keys).send().await.expect("batch_get_item");
}

/// An audit event like the ones the service writes, as a transactional Put.
fn audit_put(table: &str, user: &str, now: i64) -> TransactWriteItem {
    let id = active_sessions::domain::SessionId::generate(now).expect("id");
    let mut item = key(user, &format!("AUDIT#{id}"));
    for (k, v) in [
        ("Type", "AUDIT"),
        ("Actor", "user"),
        ("ActorId", "bench"),
        ("TargetUser", user),
        ("Scope", "sessions"),
        ("Reason", "user_logout"),
        ("SourceIp", "127.0.0.1"),
    ] {
        item.insert(k.into(), AttributeValue::S(v.into()));
    }
    item.insert("EventId".into(), AttributeValue::S(id.to_string()));
    item.insert("SessionIds".into(), AttributeValue::L(vec![AttributeValue::S(id.to_string())]));
    item.insert("DeviceLabels".into(), AttributeValue::L(vec![AttributeValue::S("Chrome on macOS".into())]));
    item.insert("Count".into(), AttributeValue::N("1".into()));
    item.insert("At".into(), AttributeValue::N(now.to_string()));
    item.insert("ExpiresAt".into(), AttributeValue::N((now / 1000 + 400 * 86_400).to_string()));
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(PK)")
        .build()
        .expect("put");
    TransactWriteItem::builder().put(put).build()
}

async fn raw_list_query(client: &Client, table: &str, user: &str) {
    let out = client
        .query()
        .table_name(table)
        .key_condition_expression("PK = :pk AND begins_with(SK, :p)")
        .expression_attribute_values(":pk", AttributeValue::S(format!("USER#{user}")))
        .expression_attribute_values(":p", AttributeValue::S("SESSION#".into()))
        .scan_index_forward(false)
        .consistent_read(true)
        .limit(19)
        .send()
        .await
        .expect("query");
    assert_eq!(out.count, 19);
}

/// The soft revoke and its audit event in one TransactWriteItems: what revoke-one writes.
async fn raw_revoke(client: &Client, table: &str, user: &str, sid: &str) {
    let now = service::now_ms();
    let update = Update::builder()
        .table_name(table)
        .set_key(Some(key(user, &format!("SESSION#{sid}"))))
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
        .build()
        .expect("update");
    client
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().update(update).build())
        .transact_items(audit_put(table, user, now))
        .send()
        .await
        .expect("transact_write_items");
}

/// The watermark raise and its audit event in one TransactWriteItems: what revoke-all writes.
async fn raw_watermark(client: &Client, table: &str, user: &str) {
    let now = service::now_ms();
    let update = Update::builder()
        .table_name(table)
        .set_key(Some(key(user, "PROFILE")))
        .update_expression(
            "SET #t = :t, RevokedBefore = :b, WatermarkAt = :b, WatermarkBy = :by, WatermarkReason = :why REMOVE RevokeKeep",
        )
        .condition_expression("attribute_not_exists(RevokedBefore) OR RevokedBefore < :b")
        .expression_attribute_names("#t", "Type")
        .expression_attribute_values(":t", AttributeValue::S("PROFILE".into()))
        .expression_attribute_values(":b", AttributeValue::N(now.to_string()))
        .expression_attribute_values(":by", AttributeValue::S("user:bench".into()))
        .expression_attribute_values(":why", AttributeValue::S("user_logout_all".into()))
        .build()
        .expect("update");
    let result = client
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().update(update).build())
        .transact_items(audit_put(table, user, now))
        .send()
        .await;
    // Two calls can share a millisecond; the condition then cancels, as it does in the product.
    if let Err(e) = result {
        assert!(e.as_service_error().is_some_and(|s| s.is_transaction_canceled_exception()), "{e:?}");
    }
}

async fn raw_count(client: &Client, table: &str, user: &str) {
    let now = service::now_ms();
    client
        .query()
        .table_name(table)
        .key_condition_expression("PK = :pk AND begins_with(SK, :p)")
        .filter_expression("#s = :a AND ExpiresAt > :now AND SignedInAt <= :before")
        .expression_attribute_names("#s", "Status")
        .expression_attribute_values(":pk", AttributeValue::S(format!("USER#{user}")))
        .expression_attribute_values(":p", AttributeValue::S("SESSION#".into()))
        .expression_attribute_values(":a", AttributeValue::S("active".into()))
        .expression_attribute_values(":now", AttributeValue::N((now / 1000).to_string()))
        .expression_attribute_values(":before", AttributeValue::N(now.to_string()))
        .select(Select::Count)
        .consistent_read(true)
        .send()
        .await
        .expect("count query");
}

#[tokio::main]
async fn main() {
    let iterations: usize = std::env::var("BENCH_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let t = TestTable::new().await;
    let (client, table) = (t.store.client(), t.name.as_str());
    let policy = Policy::default();
    println!("Active Sessions handlers vs raw DynamoDB operations, on DynamoDB Local");
    println!("({iterations} measured rounds after {WARM_UP} warm-up rounds; variants interleaved)\n");

    // ---- list: 20 sessions.
    let listed = sessions(&t, "bench-list", 20).await;
    let (token, sid) = (listed[0].token.as_str(), listed[0].session_id.to_string());
    let sid = sid.as_str();
    println!("list, 20 sessions");
    let s = measure(
        iterations,
        vec![
            (
                "handler GET /v1/sessions",
                Box::new(|| {
                    Box::pin(async {
                        let res = list_sessions::handle(&t.store, request("GET", "/v1/sessions", Some(token))).await;
                        assert_eq!(res.status(), 200);
                    })
                }),
            ),
            ("raw Query (the operation it wraps)", Box::new(|| Box::pin(raw_list_query(client, table, "bench-list")))),
            (
                "raw BatchGetItem || Query (its requests)",
                Box::new(|| {
                    Box::pin(async {
                        tokio::join!(
                            raw_auth(client, table, "bench-list", sid),
                            raw_list_query(client, table, "bench-list")
                        );
                    })
                }),
            ),
            (
                "raw BatchGetItem (validation read alone)",
                Box::new(|| Box::pin(raw_auth(client, table, "bench-list", sid))),
            ),
            (
                "raw BatchGetItem, then Query (its requests)",
                Box::new(|| {
                    Box::pin(async {
                        raw_auth(client, table, "bench-list", sid).await;
                        raw_list_query(client, table, "bench-list").await;
                    })
                }),
            ),
        ],
    )
    .await;
    // The handler verifies the token before it reads the partition: its requests are the
    // sequential pair; the parallel pair is what it cost before.
    ratio("handler / raw Query", s[0], s[1], 1.5);
    ratio("handler / its raw requests (sequential)", s[0], s[4], 1.5);
    ratio("sequential / parallel raw requests", s[4], s[2], 2.0);

    // ---- revoke one: a fresh target every time.
    let me = sign_in(&t.store, "bench-revoke", ClientKind::Browser).await;
    let me_sid = me.session_id.to_string();
    let rounds = WARM_UP + iterations;
    let targets = sessions(&t, "bench-revoke", rounds).await;
    let raw_targets = sessions(&t, "bench-revoke-raw", rounds).await;
    let seq_targets = sessions(&t, "bench-revoke-seq", rounds).await;
    let (mut a, mut b, mut c) = (targets.iter(), raw_targets.iter(), seq_targets.iter());
    println!("\nrevoke one");
    let s = measure(
        iterations,
        vec![
            (
                "handler DELETE /v1/sessions/{id}",
                Box::new(|| {
                    let id = a.next().expect("target").session_id.to_string();
                    let req = with_path(request("DELETE", "/v1/sessions/x", Some(&me.token)), &[("id", &id)]);
                    let (store, policy) = (&t.store, &policy);
                    Box::pin(async move {
                        assert_eq!(revoke_session::handle(store, policy, req).await.status(), 204);
                    })
                }),
            ),
            (
                "raw TransactWriteItems: revoke + audit (what it wraps)",
                Box::new(|| {
                    let id = b.next().expect("target").session_id.to_string();
                    Box::pin(async move { raw_revoke(client, table, "bench-revoke-raw", &id).await })
                }),
            ),
            (
                "raw BatchGetItem, then the transaction (its requests)",
                Box::new(|| {
                    let id = c.next().expect("target").session_id.to_string();
                    let me_sid = me_sid.as_str();
                    Box::pin(async move {
                        raw_auth_with(client, table, "bench-revoke", me_sid, Some(&id)).await;
                        raw_revoke(client, table, "bench-revoke-seq", &id).await;
                    })
                }),
            ),
        ],
    )
    .await;
    ratio("handler / raw transaction", s[0], s[1], 1.5);
    ratio("handler / its raw requests", s[0], s[2], 1.5);

    // ---- revoke all, N = 1, 50, 500. scope=others keeps the caller signed in, so every round does
    // the same work on the same N sessions (validation, watermark write, count of N).
    println!("\nrevoke all");
    let mut handler_by_n = Vec::new();
    for n in [1usize, 50, 500] {
        let user = format!("bench-all-{n}");
        let signed = sessions(&t, &user, n).await;
        let caller = signed.iter().min_by_key(|s| s.session_id).expect("caller");
        let caller_sid = caller.session_id.to_string();
        let raw_user = format!("bench-all-raw-{n}");
        let user = user.as_str();
        println!("  N = {n}");
        let s = measure(
            iterations,
            vec![
                (
                    "handler DELETE /v1/sessions?scope=others",
                    Box::new(|| {
                        let req =
                            with_query(request("DELETE", "/v1/sessions", Some(&caller.token)), &[("scope", "others")]);
                        let (store, policy) = (&t.store, &policy);
                        Box::pin(async move {
                            assert_eq!(revoke_all_sessions::handle(store, policy, req).await.status(), 200);
                        })
                    }),
                ),
                (
                    "raw TransactWriteItems: watermark + audit (what it wraps)",
                    Box::new(|| Box::pin(raw_watermark(client, table, &raw_user))),
                ),
                (
                    "raw BatchGetItem, COUNT Query, transaction (its requests)",
                    Box::new(|| {
                        let (caller_sid, raw_user) = (caller_sid.as_str(), raw_user.as_str());
                        Box::pin(async move {
                            raw_auth(client, table, user, caller_sid).await;
                            raw_count(client, table, user).await;
                            raw_watermark(client, table, raw_user).await;
                        })
                    }),
                ),
                ("raw COUNT Query alone", Box::new(|| Box::pin(raw_count(client, table, user)))),
            ],
        )
        .await;
        ratio(&format!("handler N={n} / raw watermark transaction"), s[0], s[1], 1.5);
        ratio(&format!("handler N={n} / its raw requests"), s[0], s[2], 1.5);
        handler_by_n.push(s[0]);
    }
    println!();
    ratio("handler N=500 / handler N=1", handler_by_n[2], handler_by_n[0], 2.0);
}
