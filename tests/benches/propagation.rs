//! Propagation: over `BENCH_SESSIONS` (1000) revocations through the local stack's HTTP API, what
//! a check started after the revoke's 2xx answers. Two checks, each repeated until it refuses:
//! a validator in this process holding the token in a warm L1 (subscribed to the invalidation
//! channel), and introspection over HTTP (whose function's L1 is warm too). Prints, for each, the
//! time from the 2xx to the first refusal (p50, p99, max) and how many answers said "valid" after
//! the 2xx; the revoke's own HTTP latency; a raw Redis PUBLISH round trip measured in the same
//! run; and, in this process against the same DynamoDB Local table and Redis, what the
//! write-through adds to a revoke (p50 with and without, interleaved).
//!
//! Run by `infra/bench.sh propagation` against the full local stack, once per variant
//! (`BENCH_VARIANT`): `write-through` (the functions as deployed), `stream-only` (the functions
//! started with `WRITE_THROUGH_BUDGET_MS=0`), `redis-paused` (redis-server stopped with SIGSTOP,
//! `BENCH_REDIS_PID`: only the revoke's latency is measured, then Redis resumes and every receipt
//! must complete: nothing lost), `fanout-down` (the poller stopped: the window alone must end every
//! cached valid, `BENCH_WINDOW_SECONDS`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use active_sessions::cache::{CacheConfig, TokenCache, WriteThrough};
use active_sessions::store::SessionsStore;

use active_sessions::domain::ClientKind;
use active_sessions::service::validate;
use active_sessions::testing::{request, sign_in, with_path, SignedIn};
use active_sessions::token::SessionToken;
use active_sessions::Policy;
use futures::stream::{self, StreamExt};
use integration_tests::{e2e_base_url, introspect_active, quantiles_ms, TestTable};
use redis::AsyncCommands;

const PER_USER: usize = 20;
/// Revocations checked at once: introspection's function serves one request at a time locally,
/// so more callers at once only measure its queue.
const WAVE: usize = 4;

#[derive(Default)]
struct Outcome {
    revoke: Duration,
    l1: Option<Duration>,
    introspection: Option<Duration>,
    stale_l1: u32,
    stale_introspection: u32,
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn report(name: &str, xs: &[Option<Duration>], stale: u32, window: Duration) {
    let misses = xs.iter().filter(|x| x.is_none_or(|d| d > window)).count();
    match quantiles_ms(xs.iter().flatten().copied().collect()) {
        None => println!("  {name:<34} no refusals at all; misses {misses}"),
        Some((p50, p99, max)) => println!(
            "  {name:<34} n={:<5} p50 {p50:>7.1} ms  p99 {p99:>7.1} ms  max {max:>7.1} ms  valid answers after the 2xx: {stale}  misses {misses}",
            xs.len()
        ),
    }
}

/// A raw PUBLISH round trip on the stack's Redis (nobody subscribed to the channel).
async fn publish_round_trip(redis: &mut redis::aio::MultiplexedConnection) -> (f64, f64, f64) {
    let mut ds = Vec::with_capacity(500);
    for _ in 0..500 {
        let started = Instant::now();
        let _: i64 = redis.publish("active-sessions:bench-noop", "x").await.expect("PUBLISH");
        ds.push(started.elapsed());
    }
    quantiles_ms(ds).expect("samples")
}

/// In this process, against the stack's table and Redis: revokes with and without the
/// write-through, interleaved. Returns the p50 of each and the max with it (ms).
async fn write_through_cost(table: &TestTable, config: &CacheConfig, tag: &str) -> (f64, f64, f64) {
    let policy = Policy::default();
    let caches = WriteThrough::new(config, CacheConfig::write_through_budget().expect("budget")).await.expect("cache");
    assert!(caches.enabled(), "the write-through is off: REDIS_URL?");
    let off = WriteThrough::off();
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 0..10 {
        let user = format!("cost-{tag}-{round}");
        let caller = sign_in(&table.store, &user, ClientKind::Browser).await;
        for i in 0..40 {
            let target = sign_in(&table.store, &user, ClientKind::MobileApp).await;
            let id = target.session_id.to_string();
            let req = with_path(request("DELETE", &format!("/v1/sessions/{id}"), Some(&caller.token)), &[("id", &id)]);
            let through = if i % 2 == 0 { &caches } else { &off };
            let started = Instant::now();
            let res = revoke_session::handle_through(&table.store, &policy, through, req).await;
            let took = started.elapsed();
            assert_eq!(res.status(), 204);
            if i % 2 == 0 {
                with.push(took)
            } else {
                without.push(took)
            }
        }
    }
    let with = quantiles_ms(with).unwrap();
    (with.0, quantiles_ms(without).unwrap().0, with.2)
}

fn print_cost(what: &str, (with, without, max): (f64, f64, f64)) {
    println!(
        "  revoke in process{what}, p50: with the write-through {with:.2} ms, without {without:.2} ms: adds {:.2} ms ({:.2}x); max with it {max:.1} ms",
        with - without,
        with / without
    );
}

#[tokio::main]
async fn main() {
    let sessions = env_num("BENCH_SESSIONS", 1000) as usize;
    let window = Duration::from_secs(env_num("BENCH_WINDOW_SECONDS", 60));
    let variant = std::env::var("BENCH_VARIANT").unwrap_or_else(|_| "write-through".into());
    let paused_redis = std::env::var("BENCH_REDIS_PID").ok().filter(|_| variant == "redis-paused");
    let base = e2e_base_url();
    let table = TestTable::e2e().await;
    let config = CacheConfig { window, ..integration_tests::stack_cache() };
    let validator = Arc::new(TokenCache::new(&config).await.expect("cache"));
    validator.subscribe().await.expect("subscribed");
    let mut redis = integration_tests::stack_redis().await;
    active_sessions::config::install_crypto_provider();
    let http = reqwest::Client::new();
    println!("== propagation, {variant}: {sessions} revocations through the local stack, window {}s", window.as_secs());

    let tag = active_sessions::domain::SessionId::new().to_string().to_lowercase();
    let users = sessions.div_ceil(PER_USER);
    let mut targets: Vec<(SignedIn, SignedIn)> = Vec::with_capacity(sessions);
    for u in 0..users {
        let user = format!("prop-{tag}-{u}");
        let caller = sign_in(&table.store, &user, ClientKind::Browser).await;
        let n = PER_USER.min(sessions - targets.len());
        let signed: Vec<SignedIn> = stream::iter(0..n)
            .map(|_| sign_in(&table.store, &user, ClientKind::Browser))
            .buffer_unordered(8)
            .collect()
            .await;
        targets.extend(signed.into_iter().map(|s| (caller.clone(), s)));
    }
    if paused_redis.is_none() {
        // Warm: every token validated once here (L1 and L2) and introspected once (the function's L1).
        for (_, t) in &targets {
            let token = SessionToken::parse(&t.token).unwrap();
            validate(&table.store, &validator, &token, active_sessions::service::now_ms()).await.expect("valid");
            assert!(introspect_active(&http, &base, &t.token).await);
        }
    }
    let publish = publish_round_trip(&mut redis).await;
    // Introspection's own round trip over the local stack (a valid token, one caller), for scale.
    let introspection = if paused_redis.is_none() {
        let mut ds = Vec::with_capacity(200);
        for _ in 0..200 {
            let started = Instant::now();
            assert!(introspect_active(&http, &base, &targets[0].1.token).await);
            ds.push(started.elapsed());
        }
        quantiles_ms(ds)
    } else {
        None
    };
    // What an L1 "valid" costs now that L2 confirms it (one MGET round trip).
    let l1_hit = if paused_redis.is_none() {
        let token = SessionToken::parse(&targets[0].1.token).unwrap();
        let mut ds = Vec::with_capacity(500);
        for _ in 0..500 {
            let started = Instant::now();
            validate(&table.store, &validator, &token, active_sessions::service::now_ms()).await.expect("valid");
            ds.push(started.elapsed());
        }
        quantiles_ms(ds)
    } else {
        None
    };
    if let Some(pid) = &paused_redis {
        let status = std::process::Command::new("kill").args(["-STOP", pid]).status().expect("kill");
        assert!(status.success(), "kill -STOP {pid}");
    }

    let give_up = window + Duration::from_secs(5);
    let check = paused_redis.is_none();
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(sessions);
    for wave in targets.chunks(WAVE) {
        let results: Vec<Outcome> = stream::iter(wave)
            .map(|(caller, target)| {
                let (http, base, validator, table) = (&http, &base, Arc::clone(&validator), &table);
                async move {
                    let started = Instant::now();
                    let res = http
                        .delete(format!("{base}/v1/sessions/{}", target.session_id))
                        .bearer_auth(&caller.token)
                        .send()
                        .await
                        .expect("revoke");
                    assert_eq!(res.status(), 204);
                    let returned = Instant::now();
                    let mut out = Outcome { revoke: returned - started, ..Outcome::default() };
                    let token = SessionToken::parse(&target.token).unwrap();
                    while check && (out.l1.is_none() || out.introspection.is_none()) && returned.elapsed() < give_up {
                        if out.l1.is_none() {
                            let now = active_sessions::service::now_ms();
                            match validate(&table.store, &validator, &token, now).await {
                                Ok(_) => out.stale_l1 += 1,
                                Err(_) => out.l1 = Some(returned.elapsed()),
                            }
                        }
                        if out.introspection.is_none() {
                            if introspect_active(http, base, &target.token).await {
                                out.stale_introspection += 1;
                            } else {
                                out.introspection = Some(returned.elapsed());
                            }
                        }
                        if out.l1.is_none() || out.introspection.is_none() {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                    out
                }
            })
            .buffer_unordered(WAVE)
            .collect()
            .await;
        outcomes.extend(results);
    }

    let revoke = quantiles_ms(outcomes.iter().map(|o| o.revoke).collect()).unwrap();
    println!(
        "  revoke over HTTP (gateway + function)  p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
        revoke.0, revoke.1, revoke.2
    );
    println!(
        "  raw Redis PUBLISH round trip           p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
        publish.0, publish.1, publish.2
    );
    if let Some((p50, p99, max)) = introspection {
        println!("  introspection round trip, valid token  p50 {p50:>7.2} ms  p99 {p99:>7.2} ms  max {max:>7.2} ms");
    }
    if let Some((p50, p99, max)) = l1_hit {
        println!("  an L1 \"valid\" (confirmed: one MGET)   p50 {p50:>7.2} ms  p99 {p99:>7.2} ms  max {max:>7.2} ms");
    }
    if let Some(pid) = &paused_redis {
        // Still paused: what the write-through adds to a revoke when Redis does not answer.
        print_cost(" (Redis paused)", write_through_cost(&table, &config, &tag).await);
        let status = std::process::Command::new("kill").args(["-CONT", pid]).status().expect("kill");
        assert!(status.success(), "kill -CONT {pid}");
        // Nothing lost: every revocation's receipt completes its caches' part once Redis is back.
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut missing = targets.len();
        while missing > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_secs(1)).await;
            missing = 0;
            for (_, t) in &targets {
                let user = SessionToken::parse(&t.token).unwrap().user_id().clone();
                let set = active_sessions::store::ReadSet {
                    sessions: vec![(user.clone(), t.session_id)],
                    ..Default::default()
                };
                let read = table.store.read(&set).await.expect("read");
                let done = read.sessions.get(&(user, t.session_id)).is_some_and(|s| s.caches_invalidated_at.is_some());
                missing += usize::from(!done);
            }
        }
        println!(
            "  lost: {missing} of {} revocations without the caches' receipt 120 s after Redis resumed (must be 0)",
            targets.len()
        );
        return;
    }
    let l1: Vec<_> = outcomes.iter().map(|o| o.l1).collect();
    let intro: Vec<_> = outcomes.iter().map(|o| o.introspection).collect();
    report("first refusal, warm L1 (this process)", &l1, outcomes.iter().map(|o| o.stale_l1).sum(), window);
    report("first refusal, introspection (HTTP)", &intro, outcomes.iter().map(|o| o.stale_introspection).sum(), window);
    if variant == "write-through" {
        print_cost("", write_through_cost(&table, &config, &tag).await);
    }
    if variant == "fanout-down" {
        let all = l1.iter().chain(&intro).all(|x| x.is_some_and(|d| d <= window));
        println!(
            "  every revoked token refused within the {}s window: {}",
            window.as_secs(),
            if all { "yes" } else { "NO" }
        );
    }
}
