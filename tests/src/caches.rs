//! The token caches of the stack under test, and one of a test's own.

/// The local stack's cache settings, as its functions have them (`infra/env.sh`: `REDIS_URL`, the
/// ACL user and password, the MAC key).
pub fn stack_cache() -> active_sessions::cache::CacheConfig {
    let config = active_sessions::cache::CacheConfig::from_env().expect("the cache's settings");
    assert!(config.redis_url.is_some() && config.mac_key.is_some(), "REDIS_URL and CACHE_MAC_KEY: run infra/test.sh");
    config
}

/// A raw connection to the local stack's Redis, logged in as the stack's ACL user (for tests that
/// look at or tamper with what is stored).
pub async fn stack_redis() -> redis::aio::MultiplexedConnection {
    let config = stack_cache();
    let url = config.redis_url.expect("REDIS_URL");
    let (user, password) = (config.redis_username.unwrap_or_default(), config.redis_password.unwrap_or_default());
    let url = url.replacen("redis://", &format!("redis://{user}:{password}@"), 1);
    redis::Client::open(url).expect("REDIS_URL").get_multiplexed_async_connection().await.expect("the stack's Redis")
}

/// What the fan-out does for a revoked token, now: the revoked marker in L2 and the invalidation to
/// every validator (`TokenCache::invalidate_token`, told by the stream). For tests that stand in
/// for the fan-out.
pub async fn fanout_invalidates(
    cache: &active_sessions::cache::TokenCache,
    token: &active_sessions::token::SessionToken,
) -> Result<active_sessions::cache::Told, redis::RedisError> {
    let now = active_sessions::service::now_ms();
    cache
        .invalidate_token(token.user_id(), token.hash().as_str(), None, active_sessions::cache::Teller::Stream, now)
        .await
}

/// Whether a raw L2 value under a token's key is a valid entry (sealed JSON), rather than nothing
/// or the revoked marker (`r|...`). Tests and benches look at Redis with this; the MAC is not checked.
pub fn l2_valid(raw: Option<String>) -> bool {
    raw.is_some_and(|v| v.split_once('.').is_some_and(|(_, payload)| payload.starts_with('{')))
}

/// A cache on a Redis of the test's own (no AUTH), with a MAC key of its own.
pub fn own_cache(url: &str) -> active_sessions::cache::CacheConfig {
    active_sessions::cache::CacheConfig {
        redis_url: Some(url.to_owned()),
        mac_key: Some(active_sessions::cache::MacKey::from_bytes(&[42; 32]).expect("a 32-byte key")),
        ..active_sessions::cache::CacheConfig::default()
    }
}
