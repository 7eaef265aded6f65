//! A configuration that reloads on a TTL: the back-channel's signing keys and product list, the
//! public JWKS `get-jwks` serves, and the keys of a workspace's identity provider. Each is loaded
//! once (the service's own at start, where a failure fails start-up, as any bad configuration
//! does; a provider's keys on first use), then again on the first use after the TTL, by one caller at a time while the others go on with the last good value. A
//! failed reload keeps the last good value, logs the error (never the value), and is tried again
//! after `RETRY_AFTER` (or the TTL, if shorter).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::env::ConfigError;

/// A failed reload is tried again after this long (or the TTL, if shorter).
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

type LoadFuture<T> = Pin<Box<dyn Future<Output = Result<T, ConfigError>> + Send>>;
type Loader<T> = Box<dyn Fn() -> LoadFuture<T> + Send + Sync>;

struct State<T> {
    value: Arc<T>,
    /// When the next use reloads.
    due: Instant,
    /// How many loads have succeeded (1: the one at start).
    generation: u64,
}

type Check<T> = Box<dyn Fn(&T, &T) -> Result<(), String> + Send + Sync>;

pub struct Reloadable<T> {
    name: &'static str,
    ttl: Duration,
    loader: Loader<T>,
    /// Whether a freshly read value may replace the one in use (else: a failed reload).
    check: Check<T>,
    /// The metric a failed reload counts in.
    failure_metric: &'static str,
    state: RwLock<State<T>>,
    reloading: tokio::sync::Mutex<()>,
}

impl<T: Send + Sync + 'static> Reloadable<T> {
    /// Loads `name` now, and again on the first use `ttl` later.
    pub async fn load<F, Fut>(name: &'static str, ttl: Duration, loader: F) -> Result<Self, ConfigError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, ConfigError>> + Send + 'static,
    {
        let loader: Loader<T> = Box::new(move || Box::pin(loader()));
        let value = Arc::new(loader().await?);
        let state = RwLock::new(State { value, due: Instant::now() + ttl, generation: 1 });
        let check: Check<T> = Box::new(|_, _| Ok(()));
        Ok(Self {
            name,
            ttl,
            loader,
            check,
            failure_metric: "ConfigReloadFailed",
            state,
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    /// Failed reloads count in `metric` instead of `ConfigReloadFailed` (which is the service's
    /// own configuration's alarm): a tenant's identity provider is not.
    pub fn with_failure_metric(mut self, metric: &'static str) -> Self {
        self.failure_metric = metric;
        self
    }

    /// A reload is kept only if `check(in use, fresh)` allows it; else it counts as failed.
    pub fn with_check(mut self, check: impl Fn(&T, &T) -> Result<(), String> + Send + Sync + 'static) -> Self {
        self.check = Box::new(check);
        self
    }

    /// The value, reloaded first if its TTL has passed. While another caller reloads, the last
    /// good value.
    pub async fn current(&self) -> Arc<T> {
        let (value, due) = {
            let s = self.state.read().unwrap_or_else(|p| p.into_inner());
            (Arc::clone(&s.value), Instant::now() >= s.due)
        };
        if !due {
            return value;
        }
        let Ok(_reloading) = self.reloading.try_lock() else { return value };
        // Another caller may have reloaded between the read and the lock.
        {
            let s = self.state.read().unwrap_or_else(|p| p.into_inner());
            if Instant::now() < s.due {
                return Arc::clone(&s.value);
            }
        }
        self.reload(value).await
    }

    /// Reloads now, whatever the TTL (an identity provider's keys, when a token names a key they
    /// lack), and returns what is in use afterwards. While another caller reloads, the last good
    /// value.
    pub async fn reload_now(&self) -> Arc<T> {
        let value = Arc::clone(&self.state.read().unwrap_or_else(|p| p.into_inner()).value);
        let Ok(_reloading) = self.reloading.try_lock() else { return value };
        self.reload(value).await
    }

    /// Reads the source (the caller holds `reloading`): the fresh value if it loads and passes the
    /// check, else `value`, kept.
    async fn reload(&self, value: Arc<T>) -> Arc<T> {
        let fresh = match (self.loader)().await {
            Ok(fresh) => (self.check)(&value, &fresh)
                .map(|()| fresh)
                .map_err(|reason| ConfigError::Invalid { name: self.name, reason }),
            Err(e) => Err(e),
        };
        match fresh {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
                s.value = Arc::clone(&fresh);
                s.due = Instant::now() + self.ttl;
                s.generation += 1;
                tracing::debug!(config = self.name, generation = s.generation, "configuration reloaded");
                fresh
            }
            Err(e) => {
                let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
                s.due = Instant::now() + self.ttl.min(RETRY_AFTER);
                tracing::warn!(config = self.name, generation = s.generation, error = %e, "configuration reload failed; keeping the last good one");
                // The rotation's timing assumes every instance reloads within the TTL: an instance
                // stuck on an old configuration is an alarm (ConfigReloadFailedAlarm).
                crate::telemetry::emit_metric(self.failure_metric, "Count", 1, None);
                value
            }
        }
    }

    /// How many loads have succeeded so far (1: the one at start).
    pub fn generation(&self) -> u64 {
        self.state.read().unwrap_or_else(|p| p.into_inner()).generation
    }
}

/// `CONFIG_RELOAD_SECONDS` (300): how long a reloadable configuration is used before it is read
/// again (1-3600).
pub fn ttl_from_env() -> Result<Duration, ConfigError> {
    let secs = crate::env::number_in("CONFIG_RELOAD_SECONDS", DEFAULT_TTL_SECS, 1, 3_600)?;
    Ok(Duration::from_secs(secs.unsigned_abs()))
}

/// The reload TTL when `CONFIG_RELOAD_SECONDS` is unset.
pub const DEFAULT_TTL_SECS: i64 = 300;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A source whose value the test changes, and which can be made to fail.
    #[derive(Clone, Default)]
    struct Source {
        value: Arc<AtomicU32>,
        failing: Arc<std::sync::atomic::AtomicBool>,
        reads: Arc<AtomicU32>,
    }

    impl Source {
        async fn read(self) -> Result<u32, ConfigError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
            if self.failing.load(Ordering::SeqCst) {
                return Err(ConfigError::Invalid { name: "TEST", reason: "unreadable".into() });
            }
            Ok(self.value.load(Ordering::SeqCst))
        }
    }

    async fn reloadable(source: &Source, ttl: Duration) -> Reloadable<u32> {
        let s = source.clone();
        Reloadable::load("test", ttl, move || s.clone().read()).await.unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_is_seen_after_the_ttl_not_before() {
        let source = Source::default();
        let config = reloadable(&source, Duration::from_secs(300)).await;
        source.value.store(7, Ordering::SeqCst);
        assert_eq!(*config.current().await, 0, "within the TTL: the value loaded at start");
        tokio::time::advance(Duration::from_secs(301)).await;
        assert_eq!(*config.current().await, 7);
        assert_eq!((config.generation(), source.reads.load(Ordering::SeqCst)), (2, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_reload_keeps_the_last_good_value_and_tries_again_later() {
        let source = Source::default();
        source.value.store(1, Ordering::SeqCst);
        let config = reloadable(&source, Duration::from_secs(300)).await;
        source.failing.store(true, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(301)).await;
        assert_eq!(*config.current().await, 1, "the last good value");
        assert_eq!(*config.current().await, 1);
        assert_eq!(source.reads.load(Ordering::SeqCst), 2, "not read again at once");
        source.failing.store(false, Ordering::SeqCst);
        source.value.store(2, Ordering::SeqCst);
        tokio::time::advance(RETRY_AFTER).await;
        assert_eq!(*config.current().await, 2, "tried again after RETRY_AFTER");
    }

    #[tokio::test(start_paused = true)]
    async fn callers_at_once_read_the_source_once() {
        let source = Source::default();
        let config = Arc::new(reloadable(&source, Duration::from_secs(1)).await);
        source.value.store(3, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(2)).await;
        let callers: Vec<_> = (0..8)
            .map(|_| {
                tokio::spawn({
                    let c = Arc::clone(&config);
                    async move { *c.current().await }
                })
            })
            .collect();
        let mut seen = Vec::new();
        for c in callers {
            seen.push(c.await.unwrap());
        }
        assert_eq!(source.reads.load(Ordering::SeqCst), 2, "one reload for eight callers");
        assert!(seen.iter().all(|v| *v == 0 || *v == 3), "{seen:?}");
        assert_eq!(*config.current().await, 3);
    }
}
