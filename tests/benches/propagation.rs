//! Propagation: over many sessions on the local stack, the time from a revoke call returning to
//! the token being rejected by (a) a validator holding it in a warm L1 (subscribed to the
//! invalidation channel) and (b) L2. Prints p50, p99, max and misses (not rejected within the
//! window). Run by `infra/bench.sh` against the full local stack (DynamoDB Local, redis-server,
//! cargo lambda watch, stream poller, revocation-fanout).
//!
//! `BENCH_SESSIONS` (1000) sessions; `BENCH_WINDOW_SECONDS` (60) is the validator's window;
//! `BENCH_FANOUT=down` says the poller is stopped, so only the window can end cached valids.

use std::sync::Arc;
use std::time::{Duration, Instant};

use active_sessions::cache::{validate, CacheConfig, TokenCache};
use active_sessions::domain::ClientKind;
use active_sessions::testing::{sign_in, SignedIn};
use active_sessions::token::SessionToken;
use futures::stream::{self, StreamExt};
use integration_tests::{e2e_base_url, TestTable};
use redis::AsyncCommands;

const PER_USER: usize = 20;
const WAVE: usize = 50;

struct Outcome {
    l1: Option<Duration>,
    l2: Option<Duration>,
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn report(name: &str, mut xs: Vec<Option<Duration>>, window: Duration, target_p50_ms: f64, target_p99_ms: f64) {
    let misses = xs.iter().filter(|x| x.is_none_or(|d| d > window)).count();
    let mut ds: Vec<Duration> = xs.drain(..).flatten().collect();
    ds.sort();
    if ds.is_empty() {
        println!("  {name:<28} no rejections at all; misses {misses}");
        return;
    }
    let at = |q: f64| ds[((ds.len() as f64 * q).ceil() as usize).clamp(1, ds.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (p50, p99, max) = (ms(at(0.5)), ms(at(0.99)), ms(*ds.last().unwrap()));
    println!(
        "  {name:<28} n={:<5} p50 {p50:>8.1} ms   p99 {p99:>8.1} ms   max {max:>8.1} ms   misses {misses}",
        ds.len()
    );
    if target_p50_ms > 0.0 {
        let ok = p50 <= target_p50_ms && p99 <= target_p99_ms && misses == 0;
        println!(
            "  {:<28} targets p50 <= {target_p50_ms} ms, p99 <= {target_p99_ms} ms, 0 misses: {}",
            "",
            if ok { "met" } else { "NOT MET" }
        );
    }
}

#[tokio::main]
async fn main() {
    let sessions = env_num("BENCH_SESSIONS", 1000) as usize;
    let window = Duration::from_secs(env_num("BENCH_WINDOW_SECONDS", 60));
    let fanout_down = std::env::var("BENCH_FANOUT").is_ok_and(|v| v == "down");
    let base = e2e_base_url();
    let table = TestTable::e2e().await;
    let config = CacheConfig { window, ..integration_tests::stack_cache() };
    let validator = Arc::new(TokenCache::new(&config).await.expect("cache"));
    validator.subscribe().await.expect("subscribed");
    let redis = integration_tests::stack_redis().await;
    let http = reqwest::Client::new();

    println!(
        "Propagation on the local stack: {sessions} sessions, window {}s, fan-out {}",
        window.as_secs(),
        if fanout_down { "DOWN (poller stopped)" } else { "up" }
    );
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
    // Warm: every token validated once, so it sits in L1 and L2.
    for (_, t) in &targets {
        let token = SessionToken::parse(&t.token).unwrap();
        validate(&table.store, &validator, &token, active_sessions::service::now_ms()).await.expect("valid");
    }

    let mut outcomes = Vec::with_capacity(sessions);
    let give_up = window + Duration::from_secs(5);
    for wave in targets.chunks(WAVE) {
        let results: Vec<Outcome> = stream::iter(wave)
            .map(|(caller, target)| {
                let (http, base, validator, table, mut redis) =
                    (&http, &base, Arc::clone(&validator), &table, redis.clone());
                async move {
                    let res = http
                        .delete(format!("{base}/v1/sessions/{}", target.session_id))
                        .bearer_auth(&caller.token)
                        .send()
                        .await
                        .expect("revoke");
                    assert_eq!(res.status(), 204);
                    let returned = Instant::now();
                    let token = SessionToken::parse(&target.token).unwrap();
                    let key = format!("as:tok:{}", token.hash().as_str());
                    let mut out = Outcome { l1: None, l2: None };
                    while (out.l1.is_none() || out.l2.is_none()) && returned.elapsed() < give_up {
                        let now = active_sessions::service::now_ms();
                        if out.l1.is_none() && validate(&table.store, &validator, &token, now).await.is_err() {
                            out.l1 = Some(returned.elapsed());
                        }
                        if out.l2.is_none() && redis.get::<_, Option<String>>(&key).await.unwrap().is_none() {
                            out.l2 = Some(returned.elapsed());
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    out
                }
            })
            .buffer_unordered(WAVE)
            .collect()
            .await;
        outcomes.extend(results);
    }
    let (l1, l2): (Vec<_>, Vec<_>) = outcomes.into_iter().map(|o| (o.l1, o.l2)).unzip();
    let (p50, p99) = if fanout_down { (0.0, 0.0) } else { (300.0, 1000.0) };
    report("(a) validator, warm L1", l1.clone(), window, p50, p99);
    report("(b) L2 (shared cache)", l2.clone(), window, p50, p99);
    if fanout_down {
        let all = l1.iter().chain(&l2).all(|x| x.is_some_and(|d| d <= window));
        println!(
            "  every revoked token died within the {}s window: {}",
            window.as_secs(),
            if all { "yes" } else { "NO" }
        );
    }
}
