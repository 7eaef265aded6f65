//! L2's Redis client: connected on first use, every call bounded, skipped for a while after it
//! failed for want of Redis; and the invalidation channel's subscription.

use std::time::Duration;

use super::wire::CHANNEL;

/// L2's client. It connects on first use, not at start-up, so a Redis that is down when a
/// validator starts costs L2 only; every call is bounded by `REDIS_TIMEOUT`.
pub(super) struct Redis {
    pub(super) client: redis::Client,
    /// Seals what is written and opens what is read.
    pub(super) mac: super::MacKey,
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
    pub(super) fn new(client: redis::Client, mac: super::MacKey) -> Self {
        Self { client, mac, manager: tokio::sync::OnceCell::new(), paused_until: std::sync::Mutex::new(None) }
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

    /// Notes that a call went unanswered within a caller's own, shorter budget: pauses as a
    /// timeout of our own would.
    pub(super) fn note_timeout(&self) {
        self.failed(&timed_out());
    }

    pub(super) async fn con(&self) -> Result<redis::aio::ConnectionManager, redis::RedisError> {
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
    pub(super) async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> redis::RedisResult<T> {
        bounded(f).await.inspect_err(|e| self.failed(e))
    }
}

/// Runs a Redis call under `REDIS_TIMEOUT`.
pub(super) async fn bounded<T>(f: impl std::future::Future<Output = redis::RedisResult<T>>) -> redis::RedisResult<T> {
    tokio::time::timeout(REDIS_TIMEOUT, f).await.map_err(|_| timed_out())?
}

pub(super) async fn open_subscription(client: &redis::Client) -> Result<redis::aio::PubSub, redis::RedisError> {
    let mut pubsub = bounded(client.get_async_pubsub()).await?;
    bounded(pubsub.subscribe(CHANNEL)).await?;
    Ok(pubsub)
}
