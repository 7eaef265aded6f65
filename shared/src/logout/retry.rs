//! How a product that did not take a logout is retried.

use std::time::Duration;

use crate::env::{number_in, ConfigError};

/// How a product that did not take a logout is retried (from the retry queue, by `logout-retry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// `LOGOUT_RETRY_HORIZON_SECONDS` (3600): from the revocation, how long a product is retried
    /// before its receipt says `failed`.
    pub horizon_ms: i64,
    /// `LOGOUT_RETRY_BACKOFF_MS` (30 000): the wait after the first failed attempt, doubled after
    /// each further one, up to `LOGOUT_RETRY_MAX_BACKOFF_MS` (600 000; at most 900 000, the
    /// longest an SQS message can be held back). Waits are whole seconds on the queue.
    pub backoff_ms: i64,
    pub max_backoff_ms: i64,
    /// `LOGOUT_INLINE_BUDGET_MS` (250): how long the fan-out waits for a product's first answer,
    /// from the moment its request can be sent. A product slower than this is handed to the
    /// retry queue, so it never holds the stream's shard (and with it every other product's next
    /// logout).
    pub inline_budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            horizon_ms: 3_600_000,
            backoff_ms: 30_000,
            max_backoff_ms: 600_000,
            inline_budget: Duration::from_millis(250),
        }
    }
}

/// How long a tombstone keeps its receipts after the horizon at least: a `failed` receipt stays
/// readable, whatever `TOMBSTONE_TTL_SECONDS` says.
pub const RECEIPTS_LINGER_MS: i64 = 3_600_000;

impl RetryPolicy {
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        let horizon_secs = number_in("LOGOUT_RETRY_HORIZON_SECONDS", d.horizon_ms / 1000, 1, 7 * 86_400)?;
        let default_inline = i64::try_from(d.inline_budget.as_millis()).unwrap_or(250);
        let inline_ms = number_in("LOGOUT_INLINE_BUDGET_MS", default_inline, 10, 3_000)?;
        let max_delay = i64::try_from(crate::queue::MAX_DELAY.as_millis()).unwrap_or(900_000);
        Ok(Self {
            horizon_ms: horizon_secs * 1000,
            backoff_ms: number_in("LOGOUT_RETRY_BACKOFF_MS", d.backoff_ms, 100, max_delay)?,
            max_backoff_ms: number_in("LOGOUT_RETRY_MAX_BACKOFF_MS", d.max_backoff_ms, 100, max_delay)?,
            inline_budget: Duration::from_millis(inline_ms.unsigned_abs()),
        })
    }

    /// The wait before step `step` (1: after the first failed attempt): the backoff doubled per
    /// step, capped.
    pub fn backoff(&self, step: u32) -> i64 {
        let doublings = step.saturating_sub(1).min(30);
        self.backoff_ms.saturating_mul(1_i64 << doublings).min(self.max_backoff_ms)
    }

    /// When to try again after `attempts` failed attempts, at `now_ms`: the backoff, never past
    /// the horizon (so the last attempt is at the horizon). `None`: the horizon has passed; give up.
    pub fn next_due(&self, attempts: u32, now_ms: i64, give_up_at: i64) -> Option<i64> {
        if now_ms >= give_up_at {
            return None;
        }
        Some(now_ms.saturating_add(self.backoff(attempts)).min(give_up_at))
    }

    /// Until when (epoch seconds) a tombstone revoked at `started_ms` must keep its receipts:
    /// past the horizon, by `RECEIPTS_LINGER_MS`.
    pub fn receipts_until_secs(&self, started_ms: i64) -> i64 {
        (started_ms + self.horizon_ms + RECEIPTS_LINGER_MS) / 1000
    }
}
