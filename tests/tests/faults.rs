//! Faults: the token cache down must never change a validation answer.

use std::time::{Duration, Instant};

use active_sessions::cache::{validate, CacheConfig, TokenCache};
use active_sessions::domain::ClientKind;
use active_sessions::model::{Actor, Revocation, RevokeReason};
use active_sessions::service;
use active_sessions::testing::sign_in;
use active_sessions::token::SessionToken;
use active_sessions::SessionStore;
use integration_tests::TestTable;

#[tokio::test]
async fn with_redis_down_validation_answers_from_dynamodb() {
    let t = TestTable::new().await;
    // Nothing listens on port 1: every Redis call fails fast or times out (bounded).
    let config =
        CacheConfig { redis_url: Some("redis://127.0.0.1:1/".into()), l1_capacity: 0, ..CacheConfig::default() };
    let cache = TokenCache::new(&config).await.expect("an unreachable Redis does not fail start-up");
    let signed = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let token = SessionToken::parse(&signed.token).unwrap();

    let started = Instant::now();
    let entry = validate(&t.store, &cache, &token, service::now_ms()).await.expect("valid from DynamoDB");
    assert_eq!(entry.session_id, signed.session_id);
    assert!(started.elapsed() < Duration::from_secs(2), "Redis calls are bounded: {:?}", started.elapsed());

    let revocation = Revocation {
        at_ms: service::now_ms(),
        actor: Actor::User,
        actor_id: "alice".into(),
        reason: RevokeReason::UserLogout,
        source_ip: None,
    };
    t.store.revoke_session(token.user_id(), token.session_id(), &revocation, 60, None).await.unwrap();
    assert!(validate(&t.store, &cache, &token, service::now_ms()).await.is_err(), "revoked, Redis or not");
    // The fan-out's side reports the failure, so the stream record is retried.
    assert!(cache.invalidate_token(token.hash().as_str()).await.is_err());
}
