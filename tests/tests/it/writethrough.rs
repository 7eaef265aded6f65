//! Write-through: the revoke handlers tell the token caches before they answer, on DynamoDB Local
//! and a redis-server of each test's own; Redis failing or paused never fails a revoke. And a
//! validator thawed after a freeze applies what it missed before its L1 answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use active_sessions::cache::{token_key, CacheConfig, Teller, TokenCache, WriteThrough};

use active_sessions::domain::ClientKind;
use active_sessions::service;
use active_sessions::service::validate;
use active_sessions::testing::{parts, request, sign_in, with_path, with_query};
use active_sessions::token::SessionToken;
use active_sessions::Policy;
use integration_tests::{OwnServer, TestTable};
use redis::AsyncCommands;

fn delete_one(token: &str, id: &str) -> lambda_http::Request {
    with_path(request("DELETE", &format!("/v1/sessions/{id}"), Some(token)), &[("id", id)])
}

/// A plain connection to a test's own redis-server, to look at what the caches wrote.
async fn raw_redis(redis: &OwnServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/", redis.port)).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// A validator in another process (as far as Redis knows): warm L1 for `tokens`, subscribed.
async fn warm_validator(
    config: &CacheConfig,
    store: &impl active_sessions::SessionStore,
    tokens: &[&SessionToken],
) -> Arc<TokenCache> {
    let validator = Arc::new(TokenCache::new(config).await.unwrap());
    validator.subscribe().await.expect("subscribed");
    let now = service::now_ms();
    for t in tokens {
        validate(store, &validator, t, now).await.expect("valid at first");
        assert!(validator.l1_contains(&t.hash(), now), "warm L1");
    }
    validator
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_has_told_every_cache_by_the_time_it_answers() {
    let t = TestTable::new().await;
    let redis = OwnServer::redis(None);
    let config = integration_tests::own_cache(&format!("redis://127.0.0.1:{}/", redis.port));
    let caches = WriteThrough::new(&config, Duration::from_millis(50)).await.unwrap();
    assert!(caches.enabled());
    let policy = Policy::default();
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let phone = sign_in(&t.store, "alice", ClientKind::MobileApp).await;
    let laptop = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let (phone_t, laptop_t) = (SessionToken::parse(&phone.token).unwrap(), SessionToken::parse(&laptop.token).unwrap());
    let validator = warm_validator(&config, &t.store, &[&phone_t, &laptop_t]).await;
    let l2_only = TokenCache::new(&CacheConfig { l1_capacity: 0, ..config.clone() }).await.unwrap();

    let req = delete_one(&me.token, &phone.session_id.to_string());
    assert_eq!(revoke_session::handle_through(&t.store, &policy, &caches, req).await.status(), 204);
    // No waiting: the revoke has answered, so every cache must refuse now.
    let now = service::now_ms();
    assert!(validate(&t.store, &validator, &phone_t, now).await.is_err(), "a warm L1 said valid after the revoke");
    assert!(validator.heard(phone_t.hash().as_str()), "refused by L1's tombstone, not by DynamoDB");
    assert!(validate(&t.store, &l2_only, &phone_t, now).await.is_err(), "L2 said valid after the revoke");
    let mut raw = raw_redis(&redis).await;
    let marker: Option<String> = raw.get(token_key(phone_t.user_id(), phone_t.hash().as_str())).await.unwrap();
    assert!(marker.is_some_and(|m| m.contains(".r|")), "no revoked marker in L2");

    // The fan-out behind it finds the marker: the caches were told by the write-through, at its time.
    let fanout = TokenCache::new(&config).await.unwrap();
    let covered = Some((0, phone.session_id));
    let told = fanout
        .invalidate_token(phone_t.user_id(), phone_t.hash().as_str(), covered, Teller::Stream, service::now_ms() + 250)
        .await
        .unwrap();
    assert_eq!(told.by, Teller::WriteThrough);
    assert!(told.at_ms <= service::now_ms(), "{told:?}");

    // Revoke the others: the watermark, told the same way.
    let req = with_query(request("DELETE", "/v1/sessions", Some(&me.token)), &[("scope", "others")]);
    let (status, _, body) = parts(&revoke_all_sessions::handle_through(&t.store, &policy, &caches, req).await);
    assert_eq!((status, body["revoked"].as_u64()), (200, Some(1)), "{body}");
    let now = service::now_ms();
    assert!(validate(&t.store, &validator, &laptop_t, now).await.is_err(), "a warm L1 said valid after revoke-all");
    assert!(validate(&t.store, &l2_only, &laptop_t, now).await.is_err(), "L2 said valid after revoke-all");
    // The sweep's record for the laptop: told by the write-through's watermark, which covers it.
    let laptop_signed_in = laptop.session_id.timestamp_ms() as i64;
    let told = fanout
        .invalidate_token(
            laptop_t.user_id(),
            laptop_t.hash().as_str(),
            Some((laptop_signed_in, laptop.session_id)),
            Teller::Stream,
            service::now_ms(),
        )
        .await
        .unwrap();
    assert_eq!(told.by, Teller::WriteThrough, "the watermark's write-through covers the swept session");
    // An older revoke-all heard late never narrows what L2 holds.
    let older = active_sessions::model::Watermark { before_ms: 1, keep: None };
    fanout.invalidate_user(laptop_t.user_id(), older, Teller::Stream, service::now_ms()).await.unwrap();
    assert!(
        validate(&t.store, &l2_only, &laptop_t, service::now_ms()).await.is_err(),
        "L2 narrowed by an older watermark"
    );
    let me_t = SessionToken::parse(&me.token).unwrap();
    validate(&t.store, &validator, &me_t, service::now_ms()).await.expect("the current session is kept");
}

/// Redis down, or hanging (paused with SIGSTOP): the revoke still answers 204 within its budget,
/// the revocation is committed, and the failure is only logged and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_answers_within_its_budget_whatever_redis_does() {
    let t = TestTable::new().await;
    let redis = OwnServer::redis(None);
    let budget = Duration::from_millis(50);
    let policy = Policy::default();
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    for (what, config) in [
        ("down", integration_tests::own_cache("redis://127.0.0.1:1/")),
        ("paused", integration_tests::own_cache(&format!("redis://127.0.0.1:{}/", redis.port))),
    ] {
        let caches = WriteThrough::new(&config, budget).await.unwrap();
        if what == "paused" {
            redis.signal("STOP");
        }
        // The write-through alone keeps to its budget (a margin for the scheduler).
        let notice = active_sessions::model::CacheNotice::Token {
            user: active_sessions::domain::UserId::parse("alice").unwrap(),
            token_hash: "ab".repeat(32),
        };
        let started = Instant::now();
        assert!(caches.tell(&notice, service::now_ms()).await.is_none(), "Redis {what}: told?");
        let took = started.elapsed();
        eprintln!("Redis {what}: the write-through gave up after {took:?}");
        assert!(took < budget + Duration::from_millis(25), "Redis {what}: the write-through took {took:?}");
        for round in 0..3 {
            let other = sign_in(&t.store, "alice", ClientKind::MobileApp).await;
            let started = Instant::now();
            let res = revoke_session::handle_through(
                &t.store,
                &policy,
                &caches,
                delete_one(&me.token, &other.session_id.to_string()),
            )
            .await;
            let took = started.elapsed();
            assert_eq!(res.status(), 204, "{what}, round {round}");
            eprintln!("Redis {what}: a revoke took {took:?} (round {round})");
            // DynamoDB's own calls take a few ms; the write-through adds at most its budget.
            assert!(took < budget + Duration::from_millis(450), "Redis {what}: the revoke took {took:?}");
            let other_t = SessionToken::parse(&other.token).unwrap();
            assert!(service::authenticate(&t.store, &other_t, service::now_ms()).await.is_err(), "not revoked: {what}");
        }
        if what == "paused" {
            redis.signal("CONT");
        }
    }
}

/// A Lambda instance is frozen between invocations, and its subscriber with it. An invalidation
/// published meanwhile waits in its socket; the first validation after the thaw must not answer
/// "valid" from L1 before it is applied (L1 asks L2 first, where the revoke left its marker). Here
/// the validator's one thread is blocked (its runtime cannot run the subscriber) while another
/// thread revokes and publishes, and the first thing it does on waking is validate.
#[test]
fn a_thawed_validator_applies_what_it_missed_before_l1_answers() {
    let redis = OwnServer::redis(None);
    let config = integration_tests::own_cache(&format!("redis://127.0.0.1:{}/", redis.port));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let store = Arc::new(active_sessions::store::MemoryStore::new());
        let signed = sign_in(store.as_ref(), "alice", ClientKind::Browser).await;
        let token = SessionToken::parse(&signed.token).unwrap();
        let validator = warm_validator(&config, store.as_ref(), &[&token]).await;
        // Let the subscriber settle, then freeze: this thread blocks, and with it the runtime.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (config, store2, token2) = (config.clone(), Arc::clone(&store), token.clone());
        std::thread::spawn(move || {
            let other = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            other.block_on(async {
                let mut s = store2.get(token2.user_id(), token2.session_id()).unwrap();
                s.status = active_sessions::model::SessionStatus::Revoked;
                store2.insert(s);
                let caches = WriteThrough::new(&config, Duration::from_millis(200)).await.unwrap();
                let notice = active_sessions::model::CacheNotice::Token {
                    user: token2.user_id().clone(),
                    token_hash: token2.hash().as_str().to_owned(),
                };
                assert!(caches.tell(&notice, service::now_ms()).await.is_some(), "published");
            });
        })
        .join()
        .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        // Thawed: the first request.
        let answer = validate(store.as_ref(), &validator, &token, service::now_ms()).await;
        assert!(answer.is_err(), "L1 answered valid from before the freeze: {answer:?}");
    });
}

/// A revoke whose first answer was lost after the commit (its write-through never ran) is retried
/// by the client: the repeat writes nothing but tells the caches, for one session and for all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_revoke_tells_the_caches_it_missed() {
    let t = TestTable::new().await;
    let redis = OwnServer::redis(None);
    let config = integration_tests::own_cache(&format!("redis://127.0.0.1:{}/", redis.port));
    let caches = WriteThrough::new(&config, Duration::from_millis(50)).await.unwrap();
    let policy = Policy::default();
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let phone = sign_in(&t.store, "alice", ClientKind::MobileApp).await;
    let laptop = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let (phone_t, laptop_t) = (SessionToken::parse(&phone.token).unwrap(), SessionToken::parse(&laptop.token).unwrap());
    let l2_only = TokenCache::new(&CacheConfig { l1_capacity: 0, ..config.clone() }).await.unwrap();
    let off = WriteThrough::off();

    let phone_id = phone.session_id.to_string();
    assert_eq!(
        revoke_session::handle_through(&t.store, &policy, &off, delete_one(&me.token, &phone_id)).await.status(),
        204
    );
    assert_eq!(
        revoke_session::handle_through(&t.store, &policy, &caches, delete_one(&me.token, &phone_id)).await.status(),
        204
    );
    let mut raw = raw_redis(&redis).await;
    let marker: Option<String> = raw.get(token_key(phone_t.user_id(), phone_t.hash().as_str())).await.unwrap();
    assert!(marker.is_some_and(|m| m.contains(".r|")), "the repeat told no cache");

    let others = || with_query(request("DELETE", "/v1/sessions", Some(&me.token)), &[("scope", "others")]);
    let (status, _, body) = parts(&revoke_all_sessions::handle_through(&t.store, &policy, &off, others()).await);
    assert_eq!((status, body["revoked"].as_u64()), (200, Some(1)));
    let (status, _, body) = parts(&revoke_all_sessions::handle_through(&t.store, &policy, &caches, others()).await);
    assert_eq!((status, body["revoked"].as_u64()), (200, Some(0)), "a repeat revokes nothing new");
    let watermark: Option<String> = raw.get(active_sessions::cache::watermark_key(laptop_t.user_id())).await.unwrap();
    assert!(watermark.is_some(), "the repeat told no cache of the watermark");
    // Before the sweep: the session is active in DynamoDB, covered by the watermark in L2.
    assert!(validate(&t.store, &l2_only, &laptop_t, service::now_ms()).await.is_err());
}
