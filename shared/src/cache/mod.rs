//! Token validation through two caches in front of DynamoDB.
//!
//! - L1: in-process, bounded (`moka`), entries live at most the propagation window.
//! - L2: the shared token cache (Redis/Valkey protocol: ElastiCache on AWS, `redis-server` locally).
//! - DynamoDB is the source of truth: one strongly consistent read, honouring the watermark.
//!
//! Entries are keyed by the token's SHA-256, never the token. A cached "valid" carries the time it
//! stops being trusted (`cached_until_ms`, at most one window after the DynamoDB read that made it);
//! copying it between levels never extends it, so even with the fan-out down a revoked token dies
//! within the window. The fan-out deletes L2 entries and publishes invalidations on a channel;
//! long-running validators subscribe so their L1 drops entries as soon as it does. Redis being
//! down never fails validation: it falls through to DynamoDB.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::domain::{AppId, SessionId, UserId};
use crate::error::ServiceError;
use crate::model::Watermark;
use crate::service::{authenticate, Principal};
use crate::store::SessionStore;
use crate::token::{SessionToken, TokenHash};

mod redis_client;
mod wire;

use redis_client::{open_subscription, Redis};
pub use wire::{Invalidation, MacKey, CHANNEL};
use wire::{TOKEN_KEY, WATERMARK_KEY};

/// What the caches hold for a valid token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedSession {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub signed_in_at: i64,
    /// Epoch seconds.
    pub expires_at: i64,
    pub apps: Vec<AppId>,
    /// Epoch ms after which this entry must not be trusted.
    pub cached_until_ms: i64,
}

impl CachedSession {
    fn from_principal(p: &Principal, now_ms: i64, window_ms: i64) -> Self {
        Self {
            user_id: p.user_id.clone(),
            session_id: p.session.session_id,
            signed_in_at: p.session.signed_in_at,
            expires_at: p.session.expires_at,
            apps: p.session.apps.clone(),
            // Never past the session's expiry, nor its idle deadline as last recorded.
            cached_until_ms: (now_ms + window_ms)
                .min(p.session.expires_at.saturating_mul(1000))
                .min(p.session.idle_deadline_ms().unwrap_or(i64::MAX)),
        }
    }

    fn trusted_at(&self, now_ms: i64, watermark: Option<&Watermark>) -> bool {
        now_ms < self.cached_until_ms && !watermark.is_some_and(|w| w.covers_at(self.signed_in_at, self.session_id))
    }
}

#[derive(Clone)]
pub struct CacheConfig {
    /// The propagation window: no cached "valid" lives longer (`PROPAGATION_WINDOW_SECONDS`, 60).
    pub window: Duration,
    /// L1 entries at most (`L1_CAPACITY`, 100 000); 0 turns L1 off.
    pub l1_capacity: u64,
    /// `REDIS_URL`; unset turns L2 off.
    pub redis_url: Option<String>,
    /// Redis's ACL user and password (ElastiCache RBAC, or `requirepass` with the `default`
    /// user); none: no AUTH.
    pub redis_username: Option<String>,
    pub redis_password: Option<String>,
    /// Authenticates L2 entries and invalidation messages; required with `redis_url`.
    pub mac_key: Option<MacKey>,
}

/// The password stays out of any log line that prints the configuration.
impl std::fmt::Debug for CacheConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheConfig")
            .field("window", &self.window)
            .field("l1_capacity", &self.l1_capacity)
            .field("redis_url", &self.redis_url)
            .field("redis_username", &self.redis_username)
            .field("redis_password", &self.redis_password.as_ref().map(|_| "(redacted)"))
            .field("mac_key", &self.mac_key)
            .finish()
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60),
            l1_capacity: 100_000,
            redis_url: None,
            redis_username: None,
            redis_password: None,
            mac_key: None,
        }
    }
}

/// Logs a value read from Redis that does not carry our MAC: someone who can write to Redis and
/// does not hold the key tried to plant it (or the key was rotated under a running validator).
/// The value itself is never logged.
fn forged(what: &'static str) {
    tracing::warn!(security_event = "cache_forgery", what, "a Redis value failed its MAC check; refused");
}

/// The two cache levels. Cheap to share behind an `Arc`.
pub struct TokenCache {
    window_ms: i64,
    l1: Option<moka::sync::Cache<String, Arc<CachedSession>>>,
    /// Watermarks heard on the channel, so L1 honours a revoke-all before the sweep's records.
    l1_watermarks: moka::sync::Cache<UserId, Watermark>,
    /// Whether L1 may answer: false while a subscriber is not listening (its entries could miss
    /// invalidations).
    l1_live: std::sync::atomic::AtomicBool,
    redis: Option<Redis>,
}

impl TokenCache {
    /// Builds the caches. A malformed `REDIS_URL`, or one without a MAC key, fails; an
    /// unreachable Redis does not.
    pub async fn new(config: &CacheConfig) -> Result<Self, crate::config::ConfigError> {
        let window = config.window;
        let l1 = (config.l1_capacity > 0)
            .then(|| moka::sync::Cache::builder().max_capacity(config.l1_capacity).time_to_live(window).build());
        let l1_watermarks = moka::sync::Cache::builder().max_capacity(100_000).time_to_live(window).build();
        let redis = match &config.redis_url {
            None => None,
            Some(url) => {
                use redis::IntoConnectionInfo;
                let invalid = |reason: String| crate::config::ConfigError::Invalid { name: "REDIS_URL", reason };
                let mac = config.mac_key.clone().ok_or(crate::config::ConfigError::Missing("CACHE_MAC_KEY"))?;
                // rustls has two crypto providers compiled in here (the SDK's aws-lc-rs, reqwest's
                // ring) and would panic at the first rediss:// connection without a choice. Err
                // only means a provider is installed already.
                let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
                let info = url.as_str().into_connection_info().map_err(|e| invalid(e.to_string()))?;
                let mut settings = info.redis_settings().clone();
                if let Some(user) = &config.redis_username {
                    settings = settings.set_username(user);
                }
                if let Some(password) = &config.redis_password {
                    settings = settings.set_password(password);
                }
                let client =
                    redis::Client::open(info.set_redis_settings(settings)).map_err(|e| invalid(e.to_string()))?;
                Some(Redis::new(client, mac))
            }
        };
        Ok(Self {
            window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX),
            l1,
            l1_watermarks,
            l1_live: std::sync::atomic::AtomicBool::new(true),
            redis,
        })
    }

    pub fn window_ms(&self) -> i64 {
        self.window_ms
    }

    pub(crate) fn l1_get(&self, key: &str, now_ms: i64) -> Option<Arc<CachedSession>> {
        if !self.l1_live.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        let entry = self.l1.as_ref()?.get(key)?;
        let watermark = self.l1_watermarks.get(&entry.user_id);
        if entry.trusted_at(now_ms, watermark.as_ref()) {
            Some(entry)
        } else {
            self.drop_l1(key);
            None
        }
    }

    /// Whether L1 holds a trusted entry for this token hash (tests and benchmarks look with this).
    pub fn l1_contains(&self, hash: &TokenHash, now_ms: i64) -> bool {
        self.l1_get(hash.as_str(), now_ms).is_some()
    }

    pub fn drop_l1(&self, key: &str) {
        if let Some(l1) = &self.l1 {
            l1.invalidate(key);
        }
    }

    /// Applies an invalidation to L1 (what the subscriber does with each message).
    pub fn apply(&self, inv: &Invalidation) {
        match inv {
            Invalidation::Token(hash) => self.drop_l1(hash),
            Invalidation::User { user, watermark } => {
                // Messages may arrive out of order: keep what covers both, never less than before
                // (an unknown kept session is not kept, which only costs cache misses).
                let merged = match self.l1_watermarks.get(user) {
                    None => *watermark,
                    Some(old) if old.covers_all_of(watermark) => return,
                    Some(old) if watermark.covers_all_of(&old) => *watermark,
                    Some(old) => old.union(*watermark, None),
                };
                self.l1_watermarks.insert(user.clone(), merged);
            }
        }
    }

    async fn l2_get(&self, key: &str, user: &UserId, now_ms: i64) -> Option<CachedSession> {
        let redis = self.redis.as_ref()?;
        let keys = [format!("{TOKEN_KEY}{key}"), format!("{WATERMARK_KEY}{user}")];
        let read = async {
            let mut con = redis.con().await?;
            redis.bounded(con.mget::<_, Vec<Option<String>>>(&keys)).await
        };
        let values: Vec<Option<String>> = match read.await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "L2 read failed; validating against DynamoDB");
                return None;
            }
        };
        let Some(json) = redis.mac.open(&keys[0], values.first()?.as_deref()?) else {
            forged("L2 token entry");
            return None;
        };
        let entry: CachedSession = serde_json::from_str(json).ok()?;
        let watermark = values.get(1).cloned().flatten().and_then(|raw| {
            let Some(encoded) = redis.mac.open(&keys[1], &raw) else {
                forged("L2 watermark");
                return None;
            };
            match Invalidation::decode(encoded) {
                Some(Invalidation::User { watermark, .. }) => Some(watermark),
                _ => None,
            }
        });
        (entry.user_id == *user && entry.trusted_at(now_ms, watermark.as_ref())).then_some(entry)
    }

    pub(crate) async fn fill(&self, key: &str, entry: &CachedSession, now_ms: i64) {
        if let Some(l1) = &self.l1 {
            l1.insert(key.to_owned(), Arc::new(entry.clone()));
        }
        if let Some(redis) = &self.redis {
            let ttl_ms = u64::try_from(entry.cached_until_ms - now_ms).unwrap_or(0);
            if ttl_ms == 0 {
                return;
            }
            let Ok(json) = serde_json::to_string(entry) else { return };
            let redis_key = format!("{TOKEN_KEY}{key}");
            let sealed = redis.mac.seal(&redis_key, &json);
            let write = async {
                let mut con = redis.con().await?;
                redis.bounded(con.pset_ex::<_, _, ()>(redis_key, sealed, ttl_ms)).await
            };
            if let Err(e) = write.await {
                tracing::warn!(error = %e, "L2 write failed");
            }
        }
    }

    /// The fan-out's side: drop a token everywhere and tell every validator.
    pub async fn invalidate_token(&self, hash: &str) -> Result<(), redis::RedisError> {
        self.drop_l1(hash);
        if let Some(redis) = &self.redis {
            let mut con = redis.con().await?;
            redis.bounded(con.del::<_, ()>(format!("{TOKEN_KEY}{hash}"))).await?;
            let message = redis.mac.seal(CHANNEL, &Invalidation::Token(hash.to_owned()).encode());
            redis.bounded(con.publish::<_, _, i64>(CHANNEL, message)).await?;
        }
        Ok(())
    }

    /// The fan-out's side of a revoke-all: L2 and every validator honour the watermark at once,
    /// before the sweep's per-session records arrive. Kept for one window, as long as any entry.
    pub async fn invalidate_user(&self, user: &UserId, watermark: Watermark) -> Result<(), redis::RedisError> {
        let inv = Invalidation::User { user: user.clone(), watermark };
        self.apply(&inv);
        if let Some(redis) = &self.redis {
            let mut con = redis.con().await?;
            let ttl_ms = u64::try_from(self.window_ms).unwrap_or(60_000);
            let redis_key = format!("{WATERMARK_KEY}{user}");
            let entry = redis.mac.seal(&redis_key, &inv.encode());
            redis.bounded(con.pset_ex::<_, _, ()>(redis_key, entry, ttl_ms)).await?;
            redis.bounded(con.publish::<_, _, i64>(CHANNEL, redis.mac.seal(CHANNEL, &inv.encode()))).await?;
        }
        Ok(())
    }

    /// Subscribes to the invalidation channel and applies every message to L1, for as long as the
    /// validator runs. For long-running validators; returns at once.
    ///
    /// L1 answers only while the channel is live: if the first subscription fails, and whenever
    /// the connection is down, every validation goes on to L2 or DynamoDB. When the
    /// connection drops it reconnects and subscribes again (backing off from 100 ms to 5 s), and
    /// empties L1, whose entries may have missed invalidations meanwhile.
    pub async fn subscribe(self: &Arc<Self>) -> Result<tokio::task::JoinHandle<()>, redis::RedisError> {
        let Some(redis) = &self.redis else {
            return Ok(tokio::spawn(async {}));
        };
        let (client, mac) = (redis.client.clone(), redis.mac.clone());
        let first = open_subscription(&client).await;
        if let Err(e) = &first {
            self.set_l1_live(false);
            tracing::warn!(error = %e, "invalidation channel down at start; L1 off until it is up");
        }
        let cache = Arc::clone(self);
        Ok(tokio::spawn(async move {
            let mut subscription = first.ok();
            let mut backoff = Duration::from_millis(100);
            loop {
                if let Some(mut pubsub) = subscription.take() {
                    backoff = Duration::from_millis(100);
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        let Ok(raw) = msg.get_payload::<String>() else { continue };
                        let Some(encoded) = mac.open(CHANNEL, &raw) else {
                            forged("invalidation message");
                            continue;
                        };
                        if let Some(inv) = Invalidation::decode(encoded) {
                            cache.apply(&inv);
                        }
                    }
                    cache.set_l1_live(false);
                    cache.clear_l1();
                    tracing::warn!("invalidation channel lost; L1 off and emptied, reconnecting");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                match open_subscription(&client).await {
                    Ok(pubsub) => {
                        // Entries filled while the channel was down may have missed invalidations.
                        cache.clear_l1();
                        cache.set_l1_live(true);
                        tracing::info!("invalidation channel subscribed");
                        subscription = Some(pubsub);
                    }
                    Err(e) => tracing::warn!(error = %e, "invalidation channel still down"),
                }
            }
        }))
    }

    fn set_l1_live(&self, live: bool) {
        self.l1_live.store(live, std::sync::atomic::Ordering::SeqCst);
    }

    /// Empties L1 (watermarks heard stay: they only ever refuse more).
    pub fn clear_l1(&self) {
        if let Some(l1) = &self.l1 {
            l1.invalidate_all();
        }
    }
}

/// Validates a token: L1, then L2, then DynamoDB (which fills both). An L1 hit is one hash and
/// two lookups (the entry, then the user's watermark heard on the channel), with no allocation
/// beyond the key.
pub async fn validate<S: SessionStore>(
    store: &S,
    cache: &TokenCache,
    token: &SessionToken,
    now_ms: i64,
) -> Result<Arc<CachedSession>, ServiceError> {
    let hash = token.hash();
    let key = hash.as_str();
    let owned_by_token = |e: &CachedSession| e.user_id == *token.user_id() && e.session_id == token.session_id();
    if let Some(entry) = cache.l1_get(key, now_ms).filter(|e| owned_by_token(e)) {
        return Ok(entry);
    }
    if let Some(entry) = cache.l2_get(key, token.user_id(), now_ms).await.filter(owned_by_token) {
        let entry = Arc::new(entry);
        if let Some(l1) = &cache.l1 {
            l1.insert(key.to_owned(), Arc::clone(&entry));
        }
        return Ok(entry);
    }
    let principal = authenticate(store, token, now_ms).await?;
    let entry = CachedSession::from_principal(&principal, now_ms, cache.window_ms);
    cache.fill(key, &entry, now_ms).await;
    Ok(Arc::new(entry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ClientKind;
    use crate::store::MemoryStore;

    async fn cache(capacity: u64, window: Duration) -> TokenCache {
        TokenCache::new(&CacheConfig { window, l1_capacity: capacity, ..CacheConfig::default() }).await.unwrap()
    }

    #[test]
    fn invalidations_round_trip() {
        let user = UserId::parse("alice").unwrap();
        for inv in [
            Invalidation::Token("ab".repeat(32)),
            Invalidation::User { user: user.clone(), watermark: Watermark { before_ms: 5, keep: None } },
            Invalidation::User { user, watermark: Watermark { before_ms: 5, keep: Some(SessionId::new()) } },
        ] {
            assert_eq!(Invalidation::decode(&inv.encode()), Some(inv));
        }
        assert_eq!(Invalidation::decode("x|y"), None);
        assert_eq!(Invalidation::decode("u|a#b|1|"), None);
    }

    #[tokio::test]
    async fn a_validated_token_is_served_from_l1_until_dropped() {
        let store = MemoryStore::new();
        let signed = crate::testing::sign_in(&store, "alice", ClientKind::Browser).await;
        let token = SessionToken::parse(&signed.token).unwrap();
        let c = cache(10, Duration::from_secs(60)).await;
        let now = crate::service::now_ms();
        validate(&store, &c, &token, now).await.unwrap();
        assert!(c.l1_contains(&token.hash(), now));
        // Revoked in the store: L1 still answers (that is what the fan-out is for)...
        store.insert({
            let mut s = store.get(token.user_id(), token.session_id()).unwrap();
            s.status = crate::model::SessionStatus::Revoked;
            s
        });
        assert!(validate(&store, &c, &token, now).await.is_ok());
        // ...until the invalidation arrives; then DynamoDB says no.
        c.apply(&Invalidation::Token(token.hash().as_str().to_owned()));
        assert!(matches!(validate(&store, &c, &token, now).await, Err(ServiceError::InvalidToken)));
    }

    #[tokio::test]
    async fn a_cached_valid_never_outlives_the_window() {
        let store = MemoryStore::new();
        let signed = crate::testing::sign_in(&store, "alice", ClientKind::Browser).await;
        let token = SessionToken::parse(&signed.token).unwrap();
        let c = cache(10, Duration::from_secs(60)).await;
        let now = crate::service::now_ms();
        let entry = validate(&store, &c, &token, now).await.unwrap();
        assert!(entry.cached_until_ms <= now + 60_000);
        assert!(c.l1_contains(&token.hash(), now + 59_999));
        assert!(!c.l1_contains(&token.hash(), now + 60_000), "not trusted past the window");
    }

    #[tokio::test]
    async fn a_user_watermark_drops_covered_entries_but_not_the_kept_one() {
        let store = MemoryStore::new();
        let a = crate::testing::sign_in(&store, "alice", ClientKind::Browser).await;
        let b = crate::testing::sign_in(&store, "alice", ClientKind::Browser).await;
        let (ta, tb) = (SessionToken::parse(&a.token).unwrap(), SessionToken::parse(&b.token).unwrap());
        let c = cache(10, Duration::from_secs(60)).await;
        let now = crate::service::now_ms();
        validate(&store, &c, &ta, now).await.unwrap();
        validate(&store, &c, &tb, now).await.unwrap();
        let user = UserId::parse("alice").unwrap();
        c.apply(&Invalidation::User { user, watermark: Watermark { before_ms: now, keep: Some(a.session_id) } });
        assert!(c.l1_contains(&ta.hash(), now));
        assert!(!c.l1_contains(&tb.hash(), now));
    }

    #[tokio::test]
    async fn watermarks_heard_out_of_order_never_cover_less() {
        let store = MemoryStore::new();
        let a = crate::testing::sign_in(&store, "alice", ClientKind::Browser).await;
        let ta = SessionToken::parse(&a.token).unwrap();
        let c = cache(10, Duration::from_secs(60)).await;
        let now = crate::service::now_ms();
        validate(&store, &c, &ta, now).await.unwrap();
        let user = UserId::parse("alice").unwrap();
        // "Others, keeping a" then an offboard covering a too, heard the other way round.
        let offboard = Watermark { before_ms: now + 10, keep: None };
        let others = Watermark { before_ms: now + 5, keep: Some(a.session_id) };
        c.apply(&Invalidation::User { user: user.clone(), watermark: offboard });
        c.apply(&Invalidation::User { user: user.clone(), watermark: others });
        assert!(!c.l1_contains(&ta.hash(), now), "the older message must not bring the kept session back");
        // Neither covers the other (different kept sessions): L1 keeps neither kept session.
        let c = cache(10, Duration::from_secs(60)).await;
        validate(&store, &c, &ta, now).await.unwrap();
        let keep_b = Watermark { before_ms: now + 20, keep: Some(SessionId::new()) };
        c.apply(&Invalidation::User { user: user.clone(), watermark: others });
        assert!(c.l1_contains(&ta.hash(), now), "a is kept by the first");
        c.apply(&Invalidation::User { user, watermark: keep_b });
        assert!(!c.l1_contains(&ta.hash(), now), "the second covers a");
    }

    #[tokio::test]
    async fn l1_is_bounded() {
        let store = MemoryStore::new();
        let c = cache(50, Duration::from_secs(60)).await;
        let now = crate::service::now_ms();
        for _ in 0..500 {
            let s = crate::testing::sign_in(&store, "bob", ClientKind::Browser).await;
            validate(&store, &c, &SessionToken::parse(&s.token).unwrap(), now).await.unwrap();
        }
        let l1 = c.l1.as_ref().unwrap();
        l1.run_pending_tasks();
        assert!(l1.entry_count() <= 50, "{} entries", l1.entry_count());
    }

    #[tokio::test]
    async fn l1_off_means_every_call_reads_the_store() {
        let store = MemoryStore::new();
        let signed = crate::testing::sign_in(&store, "alice", ClientKind::Browser).await;
        let token = SessionToken::parse(&signed.token).unwrap();
        let c = cache(0, Duration::from_secs(60)).await;
        let now = crate::service::now_ms();
        validate(&store, &c, &token, now).await.unwrap();
        assert!(!c.l1_contains(&token.hash(), now));
    }
}
