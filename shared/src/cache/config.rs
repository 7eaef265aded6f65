//! The token caches' settings, and where they are read from: the environment locally, the
//! cache's secret deployed.

use std::time::Duration;

use super::MacKey;
use crate::config::{read_secret, StoreTimeouts};
use crate::env::{number, number_in, var, ConfigError};

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

impl CacheConfig {
    /// `PROPAGATION_WINDOW_SECONDS` (60, 1-1800), `L1_CAPACITY` (100 000; 0 turns L1 off),
    /// `REDIS_URL` (unset: no L2) and, locally, the cache's secret from `REDIS_USERNAME`,
    /// `REDIS_PASSWORD` and `CACHE_MAC_KEY` (base64, at least 32 bytes; required with `REDIS_URL`).
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        let window_secs = number("PROPAGATION_WINDOW_SECONDS", i64::try_from(d.window.as_secs()).unwrap_or(60), 1)?;
        if window_secs > 1800 {
            return Err(ConfigError::Invalid { name: "PROPAGATION_WINDOW_SECONDS", reason: "expected 1-1800".into() });
        }
        let l1_capacity = number("L1_CAPACITY", i64::try_from(d.l1_capacity).unwrap_or(i64::MAX), 0)?;
        let mac_key = var("CACHE_MAC_KEY")
            .map(|raw| {
                MacKey::from_base64(&raw).map_err(|e| ConfigError::Invalid { name: "CACHE_MAC_KEY", reason: e.0 })
            })
            .transpose()?;
        Ok(Self {
            window: Duration::from_secs(window_secs.unsigned_abs()),
            l1_capacity: l1_capacity.unsigned_abs(),
            redis_url: var("REDIS_URL"),
            redis_username: var("REDIS_USERNAME"),
            redis_password: var("REDIS_PASSWORD"),
            mac_key,
        })
    }

    /// Deployed, the cache's secret (`CACHE_SECRET_ARN`, JSON `{"username", "password",
    /// "mac_key"}`) replaces the three variables; read once at start. Locally, `from_env`.
    pub async fn load(timeouts: &StoreTimeouts) -> Result<Self, ConfigError> {
        let mut config = Self::from_env()?;
        let Some(arn) = var("CACHE_SECRET_ARN") else {
            return Ok(config);
        };
        #[derive(serde::Deserialize)]
        struct CacheSecret {
            #[serde(default)]
            username: Option<String>,
            #[serde(default)]
            password: Option<String>,
            mac_key: String,
        }
        let raw = read_secret("CACHE_SECRET_ARN", &arn, timeouts).await?;
        let secret: CacheSecret = serde_json::from_str(&raw).map_err(|e| ConfigError::Invalid {
            name: "CACHE_SECRET_ARN",
            reason: format!("expected {{\"username\", \"password\", \"mac_key\"}} ({:?} error)", e.classify()),
        })?;
        config.redis_username = secret.username;
        config.redis_password = secret.password;
        config.mac_key = Some(
            MacKey::from_base64(&secret.mac_key)
                .map_err(|e| ConfigError::Invalid { name: "CACHE_SECRET_ARN", reason: e.0 })?,
        );
        Ok(config)
    }

    /// `WRITE_THROUGH_BUDGET_MS` (50, 0-1000): how long a revoke may spend telling the caches
    /// before it answers; 0 turns the write-through off (the stream alone tells them).
    pub fn write_through_budget() -> Result<Duration, ConfigError> {
        let ms = number_in("WRITE_THROUGH_BUDGET_MS", 50, 0, 1000)?;
        Ok(Duration::from_millis(ms.unsigned_abs()))
    }
}
