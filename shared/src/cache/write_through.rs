//! The revoke's side of the caches: told before the revoke answers.

use std::time::Duration;

use super::{CacheConfig, Teller, TokenCache, Told};
use crate::config::StoreTimeouts;
use crate::env::ConfigError;
use crate::model::CacheNotice;

/// The revoke's side: tells the caches, after the revocation is committed and before the revoke
/// answers, within a budget (`WRITE_THROUGH_BUDGET_MS`, 50; 0 turns it off). It never fails a
/// revoke: a failure or a timeout is logged and counted (`WriteThroughFailed`), and the stream's
/// fan-out tells the caches behind it.
pub struct WriteThrough {
    cache: Option<TokenCache>,
    budget: Duration,
}

impl WriteThrough {
    /// Tells nothing (no cache configured, or turned off): the stream alone tells the caches.
    pub fn off() -> Self {
        Self { cache: None, budget: Duration::ZERO }
    }

    /// A write-through to `config`'s cache (no L1: the revoke validates nothing through it), or off
    /// when no Redis is configured or the budget is zero. Connects at once (bounded).
    pub async fn new(config: &CacheConfig, budget: Duration) -> Result<Self, ConfigError> {
        if config.redis_url.is_none() || budget.is_zero() {
            return Ok(Self::off());
        }
        let cache = TokenCache::new(&CacheConfig { l1_capacity: 0, ..config.clone() }).await?;
        cache.connect().await;
        Ok(Self { cache: Some(cache), budget })
    }

    /// What the revoke functions start with: the cache's configuration (`CacheConfig::load`, the
    /// cache's secret deployed) and `WRITE_THROUGH_BUDGET_MS`. It never fails start-up: a revoke
    /// must work without its caches, so a configuration that cannot be read turns the write-through
    /// off (logged, and counted as `WriteThroughFailed`) and leaves the caches to the stream.
    pub async fn from_env(timeouts: &StoreTimeouts) -> Self {
        let made = async {
            let config = CacheConfig::load(timeouts).await?;
            Self::new(&config, CacheConfig::write_through_budget()?).await
        };
        match made.await {
            Ok(through) => through,
            Err(e) => {
                tracing::error!(error = %e, "write-through off: the cache's configuration could not be read");
                crate::telemetry::emit_metric("WriteThroughFailed", "Count", 1, None);
                Self::off()
            }
        }
    }

    pub fn enabled(&self) -> bool {
        self.cache.is_some()
    }

    /// Tells the caches what a committed revocation ended. `None` when off or failed.
    pub async fn tell(&self, notice: &CacheNotice, now_ms: i64) -> Option<Told> {
        let cache = self.cache.as_ref()?;
        let telling = async {
            match notice {
                CacheNotice::Token { user, token_hash } => {
                    cache.invalidate_token(user, token_hash, None, Teller::WriteThrough, now_ms).await
                }
                CacheNotice::User { user, watermark } => {
                    cache.invalidate_user(user, *watermark, Teller::WriteThrough, now_ms).await
                }
            }
        };
        let failure = match tokio::time::timeout(self.budget, telling).await {
            Ok(Ok(told)) => return Some(told),
            Ok(Err(e)) => e.to_string(),
            Err(_) => {
                cache.note_timeout();
                format!("no answer within {} ms", self.budget.as_millis())
            }
        };
        tracing::warn!(error = %failure, "write-through failed; the stream's fan-out tells the caches");
        crate::telemetry::emit_metric("WriteThroughFailed", "Count", 1, None);
        None
    }
}
