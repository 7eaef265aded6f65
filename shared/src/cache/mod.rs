//! The token caches in front of DynamoDB (validation through them: `service::validate`).
//!
//! - L1: in-process, bounded (`moka`), entries live at most the propagation window.
//! - L2: the shared token cache (Redis/Valkey protocol: ElastiCache on AWS, `redis-server` locally).
//! - DynamoDB is the source of truth: one strongly consistent read, honouring the watermark.
//!
//! Entries are keyed by the token's SHA-256, never the token. A cached "valid" carries the time it
//! stops being trusted (`cached_until_ms`, at most one window after the DynamoDB read that made it);
//! copying it between levels never extends it, so even with the fan-out down a revoked token dies
//! within the window.
//!
//! A revocation tells the caches twice: the revoke itself before it answers (`WriteThrough`), and
//! the stream's fan-out behind it. Each writes a revoked marker to L2 (a watermark for a revoke-all)
//! and publishes the invalidation that long-running validators apply to their L1. A marker lives
//! one window, and no fill overwrites it (L2: a script; L1: a tombstone), so a validation whose
//! DynamoDB read began before the revoke never leaves "valid" behind it. L1 answers "valid" only
//! once L2 has no marker or watermark against it (`lookup`): a Lambda instance thawed after a
//! freeze, whose invalidations wait in its socket, still refuses. Redis being down never fails
//! validation (it falls through to DynamoDB) nor a revoke (the stream repairs what it missed).

use std::sync::Arc;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::domain::{AppId, SessionId, UserId};
use crate::model::Watermark;
use crate::token::{SessionToken, TokenHash};

mod config;
mod invalidate;
mod redis_client;
mod scripts;
mod subscriber;
mod wire;
mod write_through;

pub use config::CacheConfig;
use redis_client::Redis;
pub use wire::{token_key, watermark_key, Invalidation, MacKey, Teller, Told, CHANNEL};
pub use write_through::WriteThrough;

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
    /// The entry for a session DynamoDB just said is active, trusted for at most `window_ms`.
    pub(crate) fn of(session: &crate::model::Session, now_ms: i64, window_ms: i64) -> Self {
        Self {
            user_id: session.user_id.clone(),
            session_id: session.session_id,
            signed_in_at: session.signed_in_at,
            expires_at: session.expires_at,
            apps: session.apps.clone(),
            // Never past the session's expiry, nor its idle deadline as last recorded.
            cached_until_ms: (now_ms + window_ms)
                .min(session.expires_at.saturating_mul(1000))
                .min(session.idle_deadline_ms().unwrap_or(i64::MAX)),
        }
    }

    fn trusted_at(&self, now_ms: i64, watermark: Option<&Watermark>) -> bool {
        now_ms < self.cached_until_ms && !watermark.is_some_and(|w| w.covers_at(self.signed_in_at, self.session_id))
    }
}

/// Logs a value read from Redis that does not carry our MAC: someone who can write to Redis and
/// does not hold the key tried to plant it (or the key was rotated under a running validator).
/// The value itself is never logged.
fn forged(what: &'static str) {
    tracing::warn!(security_event = "cache_forgery", what, "a Redis value failed its MAC check; refused");
}

/// What L1 holds under a token's hash: a valid entry, or a revoked token's tombstone (from an
/// invalidation), which no fill overwrites.
#[derive(Clone)]
enum L1Entry {
    Valid(Arc<CachedSession>),
    Revoked,
}

/// What L2 holds for a token and its user, read in one MGET: the token's entry or its revoked
/// marker, and the user's watermark.
#[derive(Default)]
struct L2Read {
    revoked: bool,
    entry: Option<CachedSession>,
    watermark: Option<Watermark>,
}

/// The two cache levels. Cheap to share behind an `Arc`.
pub struct TokenCache {
    window_ms: i64,
    l1: Option<moka::sync::Cache<String, L1Entry>>,
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
    pub async fn new(config: &CacheConfig) -> Result<Self, crate::env::ConfigError> {
        let window = config.window;
        let l1 = (config.l1_capacity > 0)
            .then(|| moka::sync::Cache::builder().max_capacity(config.l1_capacity).time_to_live(window).build());
        let l1_watermarks = moka::sync::Cache::builder().max_capacity(100_000).time_to_live(window).build();
        let redis = match &config.redis_url {
            None => None,
            Some(url) => {
                use redis::IntoConnectionInfo;
                let invalid = |reason: String| crate::env::ConfigError::Invalid { name: "REDIS_URL", reason };
                let mac = config.mac_key.clone().ok_or(crate::env::ConfigError::Missing("CACHE_MAC_KEY"))?;
                // rediss:// takes the process's crypto provider.
                crate::config::install_crypto_provider();
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

    /// The window as a Redis TTL: how long markers and watermarks stay in L2.
    fn window_ttl_ms(&self) -> u64 {
        u64::try_from(self.window_ms).unwrap_or(60_000)
    }

    /// Opens the connection to Redis now (bounded), so that the first call after start-up does
    /// not pay for it. A failure is only logged: calls connect again later.
    pub async fn connect(&self) {
        if let Some(redis) = &self.redis {
            if let Err(e) = redis.con().await {
                tracing::warn!(error = %e, "Redis not reachable at start-up; connecting on first use");
            }
        }
    }

    /// What L1 holds for a token (nothing while the channel is down: its entries could have missed
    /// invalidations).
    fn l1_lookup(&self, key: &str) -> Option<L1Entry> {
        if !self.l1_live.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        self.l1.as_ref()?.get(key)
    }

    /// Whether L1 holds a trusted entry for this token hash (tests and benchmarks look with this;
    /// no sync).
    pub fn l1_contains(&self, hash: &TokenHash, now_ms: i64) -> bool {
        let Some(L1Entry::Valid(entry)) = self.l1.as_ref().and_then(|l1| l1.get(hash.as_str())) else { return false };
        let watermark = self.l1_watermarks.get(&entry.user_id);
        self.l1_live.load(std::sync::atomic::Ordering::SeqCst) && entry.trusted_at(now_ms, watermark.as_ref())
    }

    /// L1's valid entry for a token hash, as it is (tests look with this; no sync, no checks).
    #[cfg(test)]
    pub(crate) fn l1_valid(&self, key: &str) -> Option<Arc<CachedSession>> {
        match self.l1.as_ref()?.get(key)? {
            L1Entry::Valid(entry) => Some(entry),
            L1Entry::Revoked => None,
        }
    }

    /// Whether this validator has heard that the token (by its hash) is revoked.
    pub fn heard(&self, hash: &str) -> bool {
        matches!(self.l1.as_ref().and_then(|l1| l1.get(hash)), Some(L1Entry::Revoked))
    }

    pub fn drop_l1(&self, key: &str) {
        if let Some(l1) = &self.l1 {
            l1.invalidate(key);
        }
    }

    /// Puts a valid entry in L1, unless a tombstone is there: an invalidation that arrived while
    /// the entry's read was in flight wins.
    fn l1_fill(&self, key: &str, entry: &Arc<CachedSession>) {
        if let Some(l1) = &self.l1 {
            l1.entry_by_ref(key).and_compute_with(|current| match current.map(|e| e.into_value()) {
                Some(L1Entry::Revoked) => moka::ops::compute::Op::Nop,
                _ => moka::ops::compute::Op::Put(L1Entry::Valid(Arc::clone(entry))),
            });
        }
    }

    /// Applies an invalidation to L1 (what the subscriber does with each message).
    pub fn apply(&self, inv: &Invalidation) {
        match inv {
            Invalidation::Token(hash) => {
                if let Some(l1) = &self.l1 {
                    l1.insert(hash.clone(), L1Entry::Revoked);
                }
            }
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

    /// Reads L2 for a token and its user (one MGET; the keys share a slot). `Err` when Redis is
    /// configured and did not answer; an empty read without Redis.
    async fn l2_read(&self, key: &str, user: &UserId) -> Result<L2Read, ()> {
        let Some(redis) = self.redis.as_ref() else { return Ok(L2Read::default()) };
        let keys = [token_key(user, key), watermark_key(user)];
        let read = async {
            let mut con = redis.con().await?;
            redis.bounded(con.mget::<_, Vec<Option<String>>>(&keys)).await
        };
        let values: Vec<Option<String>> = read.await.map_err(|e| {
            tracing::warn!(error = %e, "L2 read failed; validating against DynamoDB");
        })?;
        let mut out = L2Read::default();
        if let Some(Some(raw)) = values.first() {
            match redis.mac.open(&keys[0], raw) {
                None => forged("L2 token entry"),
                Some(payload) if wire::decode_marker(payload).is_some() => out.revoked = true,
                Some(payload) => {
                    out.entry = serde_json::from_str::<CachedSession>(payload).ok().filter(|e| e.user_id == *user);
                }
            }
        }
        if let Some(Some(raw)) = values.get(1) {
            match redis.mac.open(&keys[1], raw) {
                None => forged("L2 watermark"),
                Some(encoded) => out.watermark = wire::decode_watermark(encoded).map(|(w, _)| w),
            }
        }
        Ok(out)
    }

    /// Caches a valid entry in L1 and L2 (a new one, or one that learnt an app), never over a
    /// revoked marker or tombstone.
    pub(crate) async fn fill(&self, key: &str, entry: &CachedSession, now_ms: i64) {
        self.l1_fill(key, &Arc::new(entry.clone()));
        if let Some(redis) = &self.redis {
            let ttl_ms = u64::try_from(entry.cached_until_ms - now_ms).unwrap_or(0);
            if ttl_ms == 0 {
                return;
            }
            let Ok(json) = serde_json::to_string(entry) else { return };
            let redis_key = token_key(&entry.user_id, key);
            let sealed = redis.mac.seal(&redis_key, &json);
            let write = async {
                let mut con = redis.con().await?;
                let fill = redis::cmd("EVAL").arg(scripts::FILL).arg(1).arg(&redis_key).arg(sealed).arg(ttl_ms).clone();
                redis.bounded(fill.query_async::<i64>(&mut con)).await
            };
            if let Err(e) = write.await {
                tracing::warn!(error = %e, "L2 write failed");
            }
        }
    }

    /// Notes that Redis did not answer within a caller's own budget: calls skip it for a while.
    fn note_timeout(&self) {
        if let Some(redis) = &self.redis {
            redis.note_timeout();
        }
    }
}

/// What the caches say of a token (`TokenCache::lookup`).
pub(crate) enum Lookup {
    Revoked,
    Valid(Arc<CachedSession>),
    /// Neither level knows: ask DynamoDB, then `fill`.
    Unknown,
}

impl TokenCache {
    /// What the caches say of a token: L1, then L2.
    ///
    /// L1 answers "revoked" at once (a tombstone from an invalidation). It answers "valid" only
    /// once L2 agrees, in the one MGET that L2's own answer takes: no revoked marker under the
    /// token's key, no watermark covering it. A revoke writes those before it answers, so a
    /// validator that has not applied the invalidation yet (its message in flight, waiting in the
    /// socket of a Lambda instance thawed after a freeze, or on its way from another node of a
    /// cluster) still refuses. Without Redis, L1 is this process's own and answers alone.
    pub(crate) async fn lookup(&self, token: &SessionToken, now_ms: i64) -> Lookup {
        let hash = token.hash();
        let key = hash.as_str();
        let l1 = self.l1_lookup(key);
        if matches!(l1, Some(L1Entry::Revoked)) {
            return Lookup::Revoked;
        }
        let Ok(read) = self.l2_read(key, token.user_id()).await else { return Lookup::Unknown };
        if read.revoked {
            self.apply(&Invalidation::Token(key.to_owned()));
            return Lookup::Revoked;
        }
        let heard = self.l1_watermarks.get(token.user_id());
        let trusted = |e: &CachedSession| {
            e.user_id == *token.user_id()
                && e.session_id == token.session_id()
                && e.trusted_at(now_ms, read.watermark.as_ref())
                && e.trusted_at(now_ms, heard.as_ref())
        };
        if let Some(L1Entry::Valid(entry)) = l1 {
            if trusted(&entry) {
                return Lookup::Valid(entry);
            }
            self.drop_l1(key);
        }
        match read.entry.filter(|e| trusted(e)) {
            Some(entry) => {
                let entry = Arc::new(entry);
                self.l1_fill(key, &entry);
                Lookup::Valid(entry)
            }
            None => Lookup::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ClientKind;
    use crate::error::ServiceError;
    use crate::service::validate;
    use crate::store::MemoryStore;
    use std::time::Duration;

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
    async fn an_l1_fill_never_overwrites_a_revoked_tombstone() {
        let store = MemoryStore::new();
        let signed = crate::testing::sign_in(&store, "alice", ClientKind::Browser).await;
        let token = SessionToken::parse(&signed.token).unwrap();
        let c = cache(10, Duration::from_secs(60)).await;
        let now = crate::service::now_ms();
        let principal = crate::service::authenticate(&store, &token, now).await.unwrap();
        let read_before_the_revoke = CachedSession::of(&principal.session, now, 60_000);
        c.apply(&Invalidation::Token(token.hash().as_str().to_owned()));
        assert!(c.heard(token.hash().as_str()));
        c.fill(token.hash().as_str(), &read_before_the_revoke, now).await;
        assert!(!c.l1_contains(&token.hash(), now), "the stale fill won over the invalidation");
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
