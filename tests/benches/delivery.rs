//! Delivery at scale, one run (`infra/bench.sh delivery` runs several, interleaved, each on a
//! fresh table, queue and stack): `BENCH_SESSIONS` (2000) revocations through the API at a steady
//! `BENCH_RATE` (10) per second, spread round-robin over `BENCH_USERS` (400) users, to the stand-in
//! products of `BENCH_RECEIVERS` (`aud=http://127.0.0.1:port,...`). `infra/bench.sh` starts:
//! - `healthy-a`, `healthy-b`: answer at once;
//! - `dead` (variant `with-bad` only): refuses connections for the first `BENCH_DEAD_FOR_MS`
//!   (60 000) of the load, then answers: this bench starts it (`BENCH_RECEIVER_BIN`, verifying
//!   against `BENCH_JWKS_URL`) as the load starts, so its outage is the load's first minute;
//! - `hanging` (variant `with-bad` only): answers every delivery after 3 s (our timeout) throughout.
//!
//! It prints, from the receipts the stack wrote and the deliveries the products received:
//! - the healthy products' p50/p99 from the revoke returning to `delivered_at`;
//! - the dead product's backlog when it came back, and the time to drain it (its last
//!   `delivered_at` after it began listening);
//! - deliveries lost: a healthy or dead product's receipt not `delivered` once the drain deadline
//!   passed, or a hanging product's receipt that is neither `pending` (a message owes it) nor
//!   `failed`; and a revoked session with no receipt at all;
//! - repeated `jti`s per product (a `jti` received more than once: at least once allows it);
//! - partition heat, from the table's stream (every write of every function): the hottest
//!   partition key's writes in any one second, next to all writes in the busiest second;
//! - a raw DynamoDB UpdateItem's median on the same table, in the same run, as the yardstick.
//!
//! The last line is machine-readable (`RESULT {...}`), for `infra/bench.sh` to put runs side by side.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use active_sessions::domain::{ClientKind, UserId};
use active_sessions::model::DeliveryStatus;
use active_sessions::service::now_ms;
use active_sessions::store::ReceiptsStore;
use active_sessions::testing::{sign_in, SignedIn};
use futures::stream::{self, StreamExt};
use integration_tests::{e2e_base_url, TestTable};
use serde_json::{json, Value};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// p50, p99 and max (nearest rank).
fn quantiles(mut xs: Vec<i64>) -> Option<(i64, i64, i64)> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_unstable();
    let at = |q: f64| xs[((xs.len() as f64 * q).ceil() as usize).clamp(1, xs.len()) - 1];
    Some((at(0.5), at(0.99), *xs.last().unwrap()))
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

/// What one stand-in product received: every delivery's `jti` and arrival (epoch ms).
async fn received(http: &reqwest::Client, url: &str) -> Vec<(String, i64)> {
    let all: Vec<Value> =
        http.get(format!("{url}/received")).send().await.expect("receiver").json().await.expect("JSON");
    all.iter()
        .filter_map(|d| {
            let token = d["token"].as_str()?;
            let payload = token.split('.').nth(1)?;
            use base64::Engine;
            let claims: Value =
                serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
            Some((claims["jti"].as_str()?.to_owned(), d["at_ms"].as_i64()?))
        })
        .collect()
}

/// Partition heat from the stream, over the seconds `from..=to` (epoch s: the load and its
/// drain, not the sign-ins before it), leaving out the bench's own yardstick item (`BENCH#raw`).
/// DynamoDB Local stamps stream records to the minute (`ApproximateCreationDateTime` is always a
/// whole minute here), so rates are per minute, shown per second: (hottest key's writes/s in its
/// busiest minute, that key, all writes/s in the busiest minute, whether every stamp was a whole
/// minute).
async fn heat(table: &TestTable, from: i64, to: i64) -> (f64, String, f64, bool) {
    let (_, records) = table.raw_stream_records().await;
    let mut per_key: HashMap<(String, i64), usize> = HashMap::new();
    let mut per_minute: BTreeMap<i64, usize> = BTreeMap::new();
    let mut whole_minutes = true;
    for r in &records {
        let Some(data) = r.dynamodb.as_ref() else { continue };
        let second = data.approximate_creation_date_time.map_or(0, |t| t.secs());
        if !(from - 60..=to).contains(&second) {
            continue;
        }
        whole_minutes &= second % 60 == 0;
        let pk = data.keys.as_ref().and_then(|k| k.get("PK")).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        if pk.starts_with("BENCH#") {
            continue;
        }
        *per_key.entry((pk, second / 60)).or_default() += 1;
        *per_minute.entry(second / 60).or_default() += 1;
    }
    let ((key, _), hottest) = per_key.into_iter().max_by_key(|(_, n)| *n).unwrap_or_default();
    let busiest = per_minute.values().copied().max().unwrap_or(0);
    (hottest as f64 / 60.0, key, busiest as f64 / 60.0, whole_minutes)
}

#[tokio::main]
async fn main() {
    let sessions = env_num("BENCH_SESSIONS", 2000) as usize;
    let users = env_num("BENCH_USERS", 400).max(1) as usize;
    let rate = env_num("BENCH_RATE", 10).max(1);
    let drain_deadline = Duration::from_secs(env_num("BENCH_DRAIN_SECONDS", 420));
    let variant = std::env::var("BENCH_VARIANT").unwrap_or_else(|_| "with-bad".into());
    let receivers: Vec<(String, String)> = std::env::var("BENCH_RECEIVERS")
        .expect("BENCH_RECEIVERS: aud=url,... (infra/bench.sh delivery)")
        .split(',')
        .filter_map(|p| p.split_once('=').map(|(a, u)| (a.to_owned(), u.to_owned())))
        .collect();
    let healthy: Vec<&str> = receivers.iter().map(|(a, _)| a.as_str()).filter(|a| a.starts_with("healthy")).collect();
    let has = |aud: &str| receivers.iter().any(|(a, _)| a == aud);
    let base = e2e_base_url();
    let table = TestTable::e2e().await;
    active_sessions::config::install_crypto_provider();
    let http = reqwest::Client::new();
    println!(
        "== delivery, {variant}: {sessions} revocations at {rate}/s over {users} users, products {:?}",
        receivers.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>()
    );

    // Each user's caller session plus its share of targets, signed in straight on the table.
    let tag = active_sessions::domain::SessionId::new().to_string().to_lowercase();
    let mut per_user: Vec<(UserId, SignedIn, Vec<SignedIn>)> = Vec::with_capacity(users);
    for u in 0..users {
        let user = format!("delivery-{tag}-{u}");
        let me = sign_in(&table.store, &user, ClientKind::Browser).await;
        per_user.push((UserId::parse(&user).unwrap(), me, Vec::new()));
    }
    let signed: Vec<SignedIn> = stream::iter(0..sessions)
        .map(|i| {
            let user = per_user[i % users].0.as_str().to_owned();
            let store = &table.store;
            async move { sign_in(store, &user, ClientKind::MobileApp).await }
        })
        .buffered(32)
        .collect()
        .await;
    // Round robin: one user's revocations are `users / rate` seconds apart, so no partition's
    // rate grows with the total load.
    let targets: Vec<(UserId, SignedIn, SignedIn)> = signed
        .into_iter()
        .enumerate()
        .map(|(i, s)| (per_user[i % users].0.clone(), per_user[i % users].1.clone(), s))
        .collect();

    // The load starts now, and the dead product's outage with it.
    let _dead = receivers.iter().find(|(a, _)| a == "dead").map(|(_, url)| {
        let port = url.rsplit(':').next().expect("a port");
        tokio::process::Command::new(std::env::var("BENCH_RECEIVER_BIN").expect("BENCH_RECEIVER_BIN"))
            .args(["--port", port, "--aud", "dead", "--jwks-url"])
            .arg(std::env::var("BENCH_JWKS_URL").expect("BENCH_JWKS_URL"))
            .args(["--closed-for-ms", &env_num("BENCH_DEAD_FOR_MS", 60_000).to_string()])
            .kill_on_drop(true)
            .spawn()
            .expect("the dead product")
    });
    let started = Instant::now();
    let load_from = now_ms() / 1000;
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
    let load_secs = started.elapsed().as_secs_f64();
    println!("  {sessions} revokes in {load_secs:.1} s");

    // Wait until every healthy and dead receipt is delivered, or the drain deadline.
    let must_deliver: Vec<&str> = receivers.iter().map(|(a, _)| a.as_str()).filter(|a| *a != "hanging").collect();
    let deadline = Instant::now() + drain_deadline;
    let mut receipts = Vec::with_capacity(revoked.len());
    loop {
        receipts.clear();
        for chunk in revoked.chunks(64) {
            let got: Vec<_> =
                futures::future::join_all(chunk.iter().map(|r| table.store.receipts(&r.user, r.target.session_id)))
                    .await;
            receipts.extend(got.into_iter().map(|r| r.expect("receipts")));
        }
        let open = receipts
            .iter()
            .filter(|r| must_deliver.iter().any(|p| r.get(*p).is_none_or(|x| x.status != DeliveryStatus::Delivered)))
            .count();
        if open == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let mut healthy_ms = Vec::new();
    let (mut lost, mut missing) = (0usize, 0usize);
    let mut hanging: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (r, receipts) in revoked.iter().zip(&receipts) {
        if receipts.is_empty() {
            missing += 1;
            continue;
        }
        for p in &healthy {
            if let Some(at) = receipts.get(*p).and_then(|x| x.delivered_at) {
                healthy_ms.push(at - r.returned_at);
            }
        }
        lost += must_deliver
            .iter()
            .filter(|p| receipts.get(**p).is_none_or(|x| x.status != DeliveryStatus::Delivered))
            .count();
        if has("hanging") {
            let status = receipts.get("hanging").map(|x| match x.status {
                DeliveryStatus::Pending => "pending",
                DeliveryStatus::Failed => "failed",
                DeliveryStatus::Delivered => "delivered",
            });
            match status {
                Some(s) => *hanging.entry(s).or_default() += 1,
                None => lost += 1,
            }
        }
    }
    let load_to = now_ms() / 1000;
    let raw = raw_update_ms(&table, 200).await;
    println!("  raw DynamoDB UpdateItem (same table, same run): p50 {raw:.2} ms");
    let q = quantiles(healthy_ms.clone());
    if let Some((p50, p99, max)) = q {
        println!(
            "  healthy products, revoke returned -> delivered: n={} p50 {p50} ms  p99 {p99} ms  max {max} ms  (p50/raw {:.0}x)",
            healthy_ms.len(),
            p50 as f64 / raw
        );
    }

    // The dead product: its backlog when it came back, and how long it took to drain.
    let mut drain_ms = Value::Null;
    if let Some((_, url)) = receivers.iter().find(|(a, _)| a == "dead") {
        let status: Value =
            http.get(format!("{url}/status")).send().await.expect("the dead product, back").json().await.expect("JSON");
        let back = status["listening_since_ms"].as_i64().expect("listening_since_ms");
        let delivered: Vec<i64> = receipts.iter().filter_map(|r| r.get("dead").and_then(|x| x.delivered_at)).collect();
        let owed_at_back = revoked.iter().filter(|r| r.returned_at < back).count();
        let last = delivered.iter().copied().max().unwrap_or(back);
        drain_ms = json!(last - back);
        println!(
            "  dead product: back {:.1} s into the run with {owed_at_back} deliveries owed; {} of {} delivered, the last {:.1} s after it came back",
            (back - (now_ms() - started.elapsed().as_millis() as i64)) as f64 / 1000.0,
            delivered.len(),
            revoked.len(),
            (last - back) as f64 / 1000.0
        );
    }
    if !hanging.is_empty() {
        println!(
            "  hanging product's receipts: {hanging:?} (pending: a queued message owes it; failed: at the horizon)"
        );
    }
    println!("  lost: {lost} receipts not delivered (healthy and dead products) or with no status; {missing} revoked sessions without receipts");

    let mut repeats = BTreeMap::new();
    for (aud, url) in &receivers {
        let got = received(&http, url).await;
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (jti, _) in &got {
            *seen.entry(jti.as_str()).or_default() += 1;
        }
        let repeated = seen.values().filter(|n| **n > 1).count();
        println!(
            "  {aud}: {} deliveries received, {} distinct jti, {repeated} jti received more than once",
            got.len(),
            seen.len()
        );
        repeats.insert(aud.clone(), repeated);
    }

    let (hottest, key, busiest, whole_minutes) = heat(&table, load_from, load_to).await;
    println!(
        "  partition heat (per minute{}): hottest key {hottest:.2} writes/s ({key}); all keys {busiest:.1} writes/s in the busiest minute",
        if whole_minutes { ", DynamoDB Local's stamps are whole minutes" } else { "" }
    );
    let (p50, p99) = q.map_or((-1, -1), |(a, b, _)| (a, b));
    println!(
        "RESULT {}",
        json!({
            "variant": variant, "rate": rate, "sessions": sessions, "healthy_p50_ms": p50, "healthy_p99_ms": p99,
            "raw_ms": raw, "dead_drain_ms": drain_ms, "lost": lost + missing, "repeated_jti": repeats,
            "hottest_key_writes_per_s": hottest, "all_writes_per_s": busiest,
        })
    );
}
