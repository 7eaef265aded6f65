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

/// The channel the fan-out publishes invalidations on.
pub const CHANNEL: &str = "active-sessions:invalidations";
const TOKEN_KEY: &str = "as:tok:";
const WATERMARK_KEY: &str = "as:wm:";

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
            cached_until_ms: (now_ms + window_ms).min(p.session.expires_at.saturating_mul(1000)),
        }
    }

    fn trusted_at(&self, now_ms: i64, watermark: Option<&Watermark>) -> bool {
        now_ms < self.cached_until_ms && !watermark.is_some_and(|w| w.covers_at(self.signed_in_at, self.session_id))
    }
}

/// An invalidation message: one token, or every session of a user a watermark covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    Token(String),
    User { user: UserId, watermark: Watermark },
}

impl Invalidation {
    pub fn encode(&self) -> String {
        match self {
            Self::Token(hash) => format!("t|{hash}"),
            Self::User { user, watermark } => format!(
                "u|{user}|{}|{}",
                watermark.before_ms,
                watermark.keep.map(|k| k.to_string()).unwrap_or_default()
            ),
        }
    }

    pub fn decode(raw: &str) -> Option<Self> {
        let mut parts = raw.split('|');
        match parts.next()? {
            "t" => Some(Self::Token(parts.next()?.to_owned())),
            "u" => {
                let user = UserId::parse(parts.next()?).ok()?;
                let before_ms = parts.next()?.parse().ok()?;
                let keep = match parts.next()? {
                    "" => None,
                    id => Some(SessionId::parse(id).ok()?),
                };
                Some(Self::User { user, watermark: Watermark { before_ms, keep } })
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// The propagation window: no cached "valid" lives longer (`PROPAGATION_WINDOW_SECONDS`, 60).
    pub window: Duration,
    /// L1 entries at most (`L1_CAPACITY`, 100 000); 0 turns L1 off.
    pub l1_capacity: u64,
    /// `REDIS_URL`; unset turns L2 off.
    pub redis_url: Option<String>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { window: Duration::from_secs(60), l1_capacity: 100_000, redis_url: None }
    }
}

impl CacheConfig {
    pub fn from_env() -> Result<Self, crate::config::ConfigError> {
        use crate::config::ConfigError;
        let d = Self::default();
        let window = match std::env::var("PROPAGATION_WINDOW_SECONDS") {
            Err(_) => d.window,
            Ok(v) => Duration::from_secs(v.trim().parse::<u64>().ok().filter(|s| (1..=1800).contains(s)).ok_or(
                ConfigError::Invalid { name: "PROPAGATION_WINDOW_SECONDS", reason: "expected 1-1800".into() },
            )?),
        };
        let l1_capacity = match std::env::var("L1_CAPACITY") {
            Err(_) => d.l1_capacity,
            Ok(v) => v
                .trim()
                .parse()
                .map_err(|_| ConfigError::Invalid { name: "L1_CAPACITY", reason: "expected a whole number".into() })?,
        };
        let redis_url = std::env::var("REDIS_URL").ok().filter(|v| !v.trim().is_empty());
        Ok(Self { window, l1_capacity, redis_url })
    }
}

/// The two cache levels. Cheap to share behind an `Arc`.
pub struct TokenCache {
    window_ms: i64,
    l1: Option<moka::sync::Cache<String, Arc<CachedSession>>>,
    /// Watermarks heard on the channel, so L1 honours a revoke-all before the sweep's records.
    l1_watermarks: moka::sync::Cache<UserId, Watermark>,
    redis: Option<Redis>,
}

/// L2's client. It connects on first use, not at start-up, so a Redis that is down when a
/// validator starts costs L2 only; every call is bounded by `REDIS_TIMEOUT`.
struct Redis {
    client: redis::Client,
    manager: tokio::sync::OnceCell<redis::aio::ConnectionManager>,
    /// After a call fails for want of Redis, calls fail at once until then: a Redis that is down
    /// costs one bounded wait per `REDIS_PAUSE`, not one per validation.
    paused_until: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How long calls skip Redis after one failed for want of it.
const REDIS_PAUSE: Duration = Duration::from_secs(1);

/// The longest any Redis call may take before validation moves on to DynamoDB.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

fn timed_out() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "Redis call timed out"))
}

impl Redis {
    fn new(client: redis::Client) -> Self {
        Self { client, manager: tokio::sync::OnceCell::new(), paused_until: std::sync::Mutex::new(None) }
    }

    fn paused(&self) -> bool {
        let until = *self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        until.is_some_and(|t| std::time::Instant::now() < t)
    }

    /// Notes a failure: one for want of Redis (no connection, no answer in time) pauses calls.
    fn failed(&self, e: &redis::RedisError) {
        if e.is_timeout() || e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
            *self.paused_until.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(std::time::Instant::now() + REDIS_PAUSE);
        }
    }

    async fn con(&self) -> Result<redis::aio::ConnectionManager, redis::RedisError> {
        if self.paused() {
            return Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "Redis failed just now; skipped for a second",
            )));
        }
        let manager = self
            .manager
            .get_or_try_init(|| async {
                tokio::time::timeout(REDIS_TIMEOUT, self.client.get_connection_manager())
                    .await
                    .map_err(|_| timed_out())?
            })
            .await
            .inspect_err(|e| self.failed(e))?;
        Ok(manager.clone())
    }

    /// Runs a call under `REDIS_TIMEOUT`, pausing Redis if it failed for want of it.
    async fn bounded<T>(&self, f: impl std::future::Future<Output = redis::RedisResult<T>>) -> redis::RedisResult<T> {
        bounded(f).await.inspect_err(|e| self.failed(e))
    }
}

/// Runs a Redis call under `REDIS_TIMEOUT`.
async fn bounded<T>(f: impl std::future::Future<Output = redis::RedisResult<T>>) -> redis::RedisResult<T> {
    tokio::time::timeout(REDIS_TIMEOUT, f).await.map_err(|_| timed_out())?
}

impl TokenCache {
    /// Builds the caches. Only a malformed `REDIS_URL` fails; an unreachable Redis does not.
    pub async fn new(config: &CacheConfig) -> Result<Self, redis::RedisError> {
        let window = config.window;
        let l1 = (config.l1_capacity > 0)
            .then(|| moka::sync::Cache::builder().max_capacity(config.l1_capacity).time_to_live(window).build());
        let l1_watermarks = moka::sync::Cache::builder().max_capacity(100_000).time_to_live(window).build();
        let redis = match &config.redis_url {
            None => None,
            Some(url) => {
                // rustls has two crypto providers compiled in here (the SDK's aws-lc-rs, reqwest's
                // ring) and would panic at the first rediss:// connection without a choice. Err
                // only means a provider is installed already.
                let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
                Some(Redis::new(redis::Client::open(url.as_str())?))
            }
        };
        Ok(Self { window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX), l1, l1_watermarks, redis })
    }

    pub fn window_ms(&self) -> i64 {
        self.window_ms
    }

    fn l1_get(&self, key: &str, now_ms: i64) -> Option<Arc<CachedSession>> {
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
        let entry: CachedSession = serde_json::from_str(values.first()?.as_deref()?).ok()?;
        let watermark = values.get(1).cloned().flatten().and_then(|raw| match Invalidation::decode(&raw) {
            Some(Invalidation::User { watermark, .. }) => Some(watermark),
            _ => None,
        });
        (entry.user_id == *user && entry.trusted_at(now_ms, watermark.as_ref())).then_some(entry)
    }

    async fn fill(&self, key: &str, entry: &CachedSession, now_ms: i64) {
        if let Some(l1) = &self.l1 {
            l1.insert(key.to_owned(), Arc::new(entry.clone()));
        }
        if let Some(redis) = &self.redis {
            let ttl_ms = u64::try_from(entry.cached_until_ms - now_ms).unwrap_or(0);
            if ttl_ms == 0 {
                return;
            }
            let Ok(json) = serde_json::to_string(entry) else { return };
            let write = async {
                let mut con = redis.con().await?;
                redis.bounded(con.pset_ex::<_, _, ()>(format!("{TOKEN_KEY}{key}"), json, ttl_ms)).await
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
            redis.bounded(con.publish::<_, _, i64>(CHANNEL, Invalidation::Token(hash.to_owned()).encode())).await?;
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
            redis.bounded(con.pset_ex::<_, _, ()>(format!("{WATERMARK_KEY}{user}"), inv.encode(), ttl_ms)).await?;
            redis.bounded(con.publish::<_, _, i64>(CHANNEL, inv.encode())).await?;
        }
        Ok(())
    }

    /// Subscribes to the invalidation channel and applies every message to L1, for as long as the
    /// validator runs. For long-running validators; returns once subscribed (the first subscription
    /// must succeed).
    ///
    /// When the connection drops, it reconnects and subscribes again (backing off from 100 ms to
    /// 5 s). Messages published meanwhile are lost, so L1 is emptied when the connection drops and
    /// again once it is back: entries are then read again from L2 or DynamoDB.
    pub async fn subscribe(self: &Arc<Self>) -> Result<tokio::task::JoinHandle<()>, redis::RedisError> {
        let Some(redis) = &self.redis else {
            return Ok(tokio::spawn(async {}));
        };
        let client = redis.client.clone();
        let first = open_subscription(&client).await?;
        let cache = Arc::clone(self);
        Ok(tokio::spawn(async move {
            let mut subscription = Some(first);
            let mut backoff = Duration::from_millis(100);
            loop {
                if let Some(mut pubsub) = subscription.take() {
                    backoff = Duration::from_millis(100);
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        let Ok(raw) = msg.get_payload::<String>() else { continue };
                        if let Some(inv) = Invalidation::decode(&raw) {
                            cache.apply(&inv);
                        }
                    }
                    cache.clear_l1();
                    tracing::warn!("invalidation channel lost; L1 emptied, reconnecting");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                match open_subscription(&client).await {
                    Ok(pubsub) => {
                        cache.clear_l1();
                        tracing::info!("invalidation channel subscribed again");
                        subscription = Some(pubsub);
                    }
                    Err(e) => tracing::warn!(error = %e, "invalidation channel still down"),
                }
            }
        }))
    }

    /// Empties L1 (watermarks heard stay: they only ever refuse more).
    pub fn clear_l1(&self) {
        if let Some(l1) = &self.l1 {
            l1.invalidate_all();
        }
    }
}

async fn open_subscription(client: &redis::Client) -> Result<redis::aio::PubSub, redis::RedisError> {
    let mut pubsub = bounded(client.get_async_pubsub()).await?;
    bounded(pubsub.subscribe(CHANNEL)).await?;
    Ok(pubsub)
}

/// Validates a token: L1, then L2, then DynamoDB (which fills both). An L1 hit is one hash
/// and one lookup, with no allocation beyond the key.
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

/// Remembers which sessions this instance marked active recently, so a hot session writes
/// `LastActiveAt` at most once per interval (`LAST_ACTIVE_INTERVAL_SECONDS`, 300).
pub struct ActivityTracker {
    interval_ms: i64,
    recent: moka::sync::Cache<SessionId, ()>,
}

impl ActivityTracker {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval_ms: i64::try_from(interval.as_millis()).unwrap_or(i64::MAX),
            recent: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(interval).build(),
        }
    }

    pub fn from_env() -> Result<Self, crate::config::ConfigError> {
        let secs = match std::env::var("LAST_ACTIVE_INTERVAL_SECONDS") {
            Err(_) => 300,
            Ok(v) => v.trim().parse::<u64>().ok().filter(|s| *s >= 1).ok_or(crate::config::ConfigError::Invalid {
                name: "LAST_ACTIVE_INTERVAL_SECONDS",
                reason: "expected a whole number >= 1".into(),
            })?,
        };
        Ok(Self::new(Duration::from_secs(secs)))
    }

    /// Whether to write now; marks the session as written for one interval.
    fn claim(&self, session: SessionId) -> bool {
        if self.recent.contains_key(&session) {
            return false;
        }
        self.recent.insert(session, ());
        true
    }

    /// Forgets a claim whose write failed, so the next call tries again.
    fn release(&self, session: SessionId) {
        self.recent.invalidate(&session);
    }
}

/// The RFC 7662 request: `token`, and optionally the first-party `app` asking.
#[derive(Debug, Deserialize)]
pub struct IntrospectionRequest {
    pub token: Option<String>,
    pub token_type_hint: Option<String>,
    pub app: Option<String>,
}

/// The RFC 7662 answer. Inactive tokens get `{"active": false}` and nothing else.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<SessionId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apps: Option<Vec<AppId>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
}

impl Introspection {
    fn inactive() -> Self {
        Self { active: false, sub: None, sid: None, exp: None, iat: None, apps: None, token_type: None }
    }
}

/// Introspects a token through the caches; records the asking app and (at most once per
/// interval) the session's last activity.
#[tracing::instrument(skip_all)]
pub async fn introspect<S: SessionStore>(
    store: &S,
    cache: &TokenCache,
    activity: &ActivityTracker,
    request: IntrospectionRequest,
    now_ms: i64,
) -> Result<Introspection, ServiceError> {
    let raw =
        request.token.filter(|t| !t.is_empty()).ok_or_else(|| ServiceError::BadRequest("token is required".into()))?;
    let app = request.app.as_deref().map(AppId::parse).transpose().map_err(|e| ServiceError::BadRequest(e.0))?;
    let Ok(token) = SessionToken::parse(&raw) else { return Ok(Introspection::inactive()) };
    let mut entry = match validate(store, cache, &token, now_ms).await {
        Ok(entry) => Arc::unwrap_or_clone(entry),
        Err(ServiceError::InvalidToken) => return Ok(Introspection::inactive()),
        Err(other) => return Err(other),
    };
    // Bookkeeping is best effort: it never changes the answer. A write that fails is retried on a
    // later call (the claim is released, and a missing app is still missing).
    if activity.claim(entry.session_id) {
        let stale_before = now_ms - activity.interval_ms;
        if let Err(e) = store.touch_session(&entry.user_id, entry.session_id, now_ms, stale_before).await {
            activity.release(entry.session_id);
            tracing::warn!(error = %e, session_id = %entry.session_id, "last activity not recorded; retried later");
        }
    }
    if let Some(app) = app.filter(|a| !entry.apps.contains(a)) {
        match store.add_app(&entry.user_id, entry.session_id, &app, now_ms).await {
            Ok(()) => {
                entry.apps.push(app);
                // Both levels learn the app (the entry keeps its `cached_until_ms`), so the same
                // write is not repeated on every call for the rest of the window.
                cache.fill(token.hash().as_str(), &entry, now_ms).await;
            }
            Err(e) => tracing::warn!(error = %e, session_id = %entry.session_id, "app not recorded; retried later"),
        }
    }
    Ok(Introspection {
        active: true,
        sub: Some(entry.user_id),
        sid: Some(entry.session_id),
        exp: Some(entry.expires_at),
        iat: Some(entry.signed_in_at / 1000),
        apps: Some(entry.apps),
        token_type: Some("bearer"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ClientKind;
    use crate::store::MemoryStore;

    async fn cache(capacity: u64, window: Duration) -> TokenCache {
        TokenCache::new(&CacheConfig { window, l1_capacity: capacity, redis_url: None }).await.unwrap()
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

    fn introspection(token: &str, app: Option<&str>) -> IntrospectionRequest {
        IntrospectionRequest { token: Some(token.into()), token_type_hint: None, app: app.map(Into::into) }
    }

    #[tokio::test]
    async fn failed_bookkeeping_never_fails_a_valid_token_and_is_retried() {
        let store = Arc::new(MemoryStore::new());
        let signed = crate::testing::sign_in(&*store, "alice", ClientKind::Browser).await;
        let chaos = crate::testing::ChaosStore::new(Arc::clone(&store), 7);
        chaos.fail("touch_session");
        chaos.fail("add_app");
        let c = cache(10, Duration::from_secs(60)).await;
        let activity = ActivityTracker::new(Duration::from_secs(300));
        // Past the last-activity interval, so a touch is due.
        let now = crate::service::now_ms() + 400_000;
        let answer = introspect(&chaos, &c, &activity, introspection(&signed.token, Some("codex")), now).await;
        let answer = answer.expect("a valid token stays valid when bookkeeping fails");
        assert!(answer.active);
        let user = UserId::parse("alice").unwrap();
        let stored = store.get(&user, signed.session_id).unwrap();
        assert_eq!(stored.apps, vec![AppId::parse("chatgpt").unwrap()], "the failed write wrote nothing");
        assert!(stored.last_active_at < now);
        // DynamoDB recovers: the next call writes both.
        chaos.heal("touch_session");
        chaos.heal("add_app");
        let answer = introspect(&chaos, &c, &activity, introspection(&signed.token, Some("codex")), now).await.unwrap();
        assert!(answer.apps.unwrap().contains(&AppId::parse("codex").unwrap()));
        let stored = store.get(&user, signed.session_id).unwrap();
        assert!(stored.apps.contains(&AppId::parse("codex").unwrap()));
        assert_eq!(stored.last_active_at, now, "the failed touch was retried");
    }

    #[tokio::test]
    async fn an_added_app_is_cached_so_the_write_is_not_repeated() {
        let store = MemoryStore::new();
        let signed = crate::testing::sign_in(&store, "alice", ClientKind::Browser).await;
        let c = cache(10, Duration::from_secs(60)).await;
        let activity = ActivityTracker::new(Duration::from_secs(300));
        let now = crate::service::now_ms();
        introspect(&store, &c, &activity, introspection(&signed.token, Some("codex")), now).await.unwrap();
        let hash = SessionToken::parse(&signed.token).unwrap().hash();
        let entry = c.l1_get(hash.as_str(), now).expect("the entry stays cached after the app is added");
        assert!(entry.apps.contains(&AppId::parse("codex").unwrap()), "and knows the app");
        let writes = store.writes();
        for _ in 0..3 {
            let answer = introspect(&store, &c, &activity, introspection(&signed.token, Some("codex")), now).await;
            assert!(answer.unwrap().apps.unwrap().contains(&AppId::parse("codex").unwrap()));
        }
        assert_eq!(store.writes(), writes, "no second write");
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
