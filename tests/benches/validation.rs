//! Validation speed (criterion):
//! - `l1_hit`: a token validated from a warm L1 (in-memory store behind it, never reached).
//!   The throughput line is hits per second on one core (the benchmark runs on one thread).
//! - `miss_vs_raw`: a miss (L1 off, no L2) validated against DynamoDB Local, next to the raw
//!   strongly consistent BatchGetItem it makes, in the same run. Needs DynamoDB Local
//!   (`infra/bench.sh` starts it).

use std::time::Duration;

use active_sessions::cache::{CacheConfig, TokenCache};
use active_sessions::store::SessionsStore;

use active_sessions::domain::ClientKind;
use active_sessions::service;
use active_sessions::service::validate;
use active_sessions::store::{MemoryStore, ReadSet};
use active_sessions::testing::sign_in;
use active_sessions::token::SessionToken;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use integration_tests::TestTable;

fn l1_hit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store = MemoryStore::new();
    let (cache, token) = rt.block_on(async {
        let cache = TokenCache::new(&CacheConfig::default()).await.unwrap();
        let signed = sign_in(&store, "alice", ClientKind::Browser).await;
        let token = SessionToken::parse(&signed.token).unwrap();
        validate(&store, &cache, &token, service::now_ms()).await.unwrap();
        (cache, token)
    });
    let now = service::now_ms();
    let mut group = c.benchmark_group("l1_hit");
    group.throughput(Throughput::Elements(1));
    group.bench_function("validate (warm L1)", |b| {
        b.iter(|| {
            let fut = validate(&store, &cache, &token, now);
            // Never pends on an L1 hit: poll it once, no runtime involved.
            let waker = futures::task::noop_waker();
            let mut cx = std::task::Context::from_waker(&waker);
            let mut fut = std::pin::pin!(fut);
            match std::future::Future::poll(fut.as_mut(), &mut cx) {
                std::task::Poll::Ready(r) => r.unwrap(),
                std::task::Poll::Pending => panic!("an L1 hit must not wait"),
            }
        })
    });
    group.finish();
}

fn miss_vs_raw(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let (table, token) = rt.block_on(async {
        let table = TestTable::new().await;
        let signed = sign_in(&table.store, "alice", ClientKind::Browser).await;
        (table, SessionToken::parse(&signed.token).unwrap())
    });
    let cache = rt.block_on(TokenCache::new(&CacheConfig { l1_capacity: 0, ..CacheConfig::default() })).unwrap();
    let set = ReadSet {
        sessions: vec![(token.user_id().clone(), token.session_id())],
        profiles: vec![token.user_id().clone()],
        ..Default::default()
    };
    let mut group = c.benchmark_group("miss_vs_raw");
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("raw BatchGetItem (session + profile)", |b| {
        b.to_async(&rt).iter(|| async { table.store.read(&set).await.unwrap() })
    });
    group.bench_function("validate (miss: DynamoDB)", |b| {
        b.to_async(&rt).iter(|| async { validate(&table.store, &cache, &token, service::now_ms()).await.unwrap() })
    });
    group.finish();
}

criterion_group!(benches, l1_hit, miss_vs_raw);
criterion_main!(benches);
