//! Each product on its own, in one instance: a gate that bounds its deliveries in flight, and a
//! circuit breaker that stops connecting to it while it keeps failing.
//!
//! The breaker opens after `failures` consecutive failed deliveries within `period`. While it is
//! open, the product's deliveries are put back on the retry queue with their delay, without a
//! connection being opened and without an attempt being counted. After `cool_down`, one delivery
//! goes through as a probe (half-open): its success closes the breaker, its failure opens it
//! again for another `cool_down`. State is per instance: each Lambda instance learns on its own,
//! which costs at most `failures` attempts per instance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::env::{number_in, ConfigError};

/// Deliveries in flight to one product at most, per instance: a slow product holds its own slots
/// only, never another product's.
pub const PER_PRODUCT_CONCURRENCY: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// `LOGOUT_BREAKER_FAILURES` (5): consecutive failures that open the breaker.
    pub failures: u32,
    /// `LOGOUT_BREAKER_PERIOD_MS` (30 000): the failures must fall within this long.
    pub period: Duration,
    /// `LOGOUT_BREAKER_COOLDOWN_MS` (30 000): how long it stays open before a probe.
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { failures: 5, period: Duration::from_secs(30), cool_down: Duration::from_secs(30) }
    }
}

impl BreakerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        let ms = |name, default: Duration| -> Result<Duration, ConfigError> {
            let default = i64::try_from(default.as_millis()).unwrap_or(30_000);
            Ok(Duration::from_millis(number_in(name, default, 100, 3_600_000)?.unsigned_abs()))
        };
        Ok(Self {
            failures: u32::try_from(number_in("LOGOUT_BREAKER_FAILURES", i64::from(d.failures), 1, 1_000)?)
                .unwrap_or(d.failures),
            period: ms("LOGOUT_BREAKER_PERIOD_MS", d.period)?,
            cool_down: ms("LOGOUT_BREAKER_COOLDOWN_MS", d.cool_down)?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `failures` in a row so far, the first at `since` (epoch ms).
    Closed { failures: u32, since: i64 },
    /// No connection until `until` (epoch ms).
    Open { until: i64 },
    /// One probe in flight since `since`; the others wait.
    HalfOpen { since: i64 },
}

/// Whether a delivery may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Go,
    /// The breaker is open: put the delivery back.
    Refused,
}

#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    state: State,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self { config, state: State::Closed { failures: 0, since: 0 } }
    }

    /// Whether a delivery would be refused at `now`, without taking the probe.
    pub fn is_open(&self, now: i64) -> bool {
        match self.state {
            State::Closed { .. } => false,
            State::Open { until } => now < until,
            State::HalfOpen { since } => now < since + ms(self.config.cool_down),
        }
    }

    /// Asks to deliver at `now`. Past the cool-down the first asker is the probe (a probe that
    /// never reported back is replaced after another cool-down).
    pub fn pass(&mut self, now: i64) -> Pass {
        match self.state {
            State::Closed { .. } => Pass::Go,
            State::Open { until } if now < until => Pass::Refused,
            State::HalfOpen { since } if now < since + ms(self.config.cool_down) => Pass::Refused,
            State::Open { .. } | State::HalfOpen { .. } => {
                self.state = State::HalfOpen { since: now };
                Pass::Go
            }
        }
    }

    /// A delivery succeeded: the product answers; close.
    pub fn success(&mut self) {
        self.state = State::Closed { failures: 0, since: 0 };
    }

    /// A delivery failed at `now`. Whether this failure opened the breaker.
    pub fn failure(&mut self, now: i64) -> bool {
        let cool_down = ms(self.config.cool_down);
        let was_closed = matches!(self.state, State::Closed { .. });
        self.state = match self.state {
            State::Closed { failures, since } => {
                let (failures, since) = if failures == 0 || now - since > ms(self.config.period) {
                    (1, now)
                } else {
                    (failures + 1, since)
                };
                if failures >= self.config.failures {
                    State::Open { until: now + cool_down }
                } else {
                    State::Closed { failures, since }
                }
            }
            // The probe (or a delivery begun before the breaker opened) failed: open again.
            State::HalfOpen { .. } => State::Open { until: now + cool_down },
            open @ State::Open { .. } => open,
        };
        was_closed && matches!(self.state, State::Open { .. })
    }
}

/// One product's gate and breaker.
pub struct Guard {
    aud: String,
    pub gate: tokio::sync::Semaphore,
    breaker: Mutex<Breaker>,
}

impl Guard {
    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_open(&self, now: i64) -> bool {
        self.breaker().is_open(now)
    }

    pub fn pass(&self, now: i64) -> Pass {
        self.breaker().pass(now)
    }

    /// Records a delivery's outcome.
    pub fn record(&self, delivered: bool, now: i64) {
        let mut breaker = self.breaker();
        if delivered {
            breaker.success();
        } else if breaker.failure(now) {
            tracing::warn!(
                aud = self.aud,
                failures = breaker.config.failures,
                "product's circuit opened: its deliveries go back on the queue until a probe succeeds"
            );
        }
    }
}

/// Every product's guard in this instance, made on first use: products added to the
/// configuration get one, and a reloaded configuration keeps what the breakers learned.
pub struct ProductGuards {
    config: BreakerConfig,
    guards: Mutex<HashMap<String, Arc<Guard>>>,
}

impl ProductGuards {
    pub fn new(config: BreakerConfig) -> Self {
        Self { config, guards: Mutex::default() }
    }

    pub fn get(&self, aud: &str) -> Arc<Guard> {
        let mut guards = self.guards.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(guards.entry(aud.to_owned()).or_insert_with(|| {
            Arc::new(Guard {
                aud: aud.to_owned(),
                gate: tokio::sync::Semaphore::new(PER_PRODUCT_CONCURRENCY),
                breaker: Mutex::new(Breaker::new(self.config)),
            })
        }))
    }
}

impl Default for ProductGuards {
    fn default() -> Self {
        Self::new(BreakerConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig {
            failures: 3,
            period: Duration::from_millis(1_000),
            cool_down: Duration::from_millis(500),
        })
    }

    #[test]
    fn consecutive_failures_within_the_period_open_it() {
        let mut b = breaker();
        b.failure(0);
        b.failure(100);
        assert_eq!(b.pass(150), Pass::Go, "two of three");
        b.failure(200);
        assert_eq!(b.pass(250), Pass::Refused, "three in a row within a second");
        assert!(b.is_open(699));
        assert!(!b.is_open(700), "the cool-down is over");
    }

    #[test]
    fn a_success_or_a_slow_trickle_of_failures_does_not() {
        let mut b = breaker();
        b.failure(0);
        b.failure(100);
        b.success();
        b.failure(200);
        b.failure(300);
        assert_eq!(b.pass(350), Pass::Go, "a success in between resets the count");
        let mut b = breaker();
        b.failure(0);
        b.failure(900);
        b.failure(1_500);
        assert_eq!(b.pass(1_600), Pass::Go, "the first failure fell out of the period");
    }

    #[test]
    fn after_the_cool_down_one_probe_decides() {
        let mut b = breaker();
        for t in [0, 1, 2] {
            b.failure(t);
        }
        assert_eq!(b.pass(600), Pass::Go, "the probe");
        assert_eq!(b.pass(601), Pass::Refused, "one probe at a time");
        b.failure(650);
        assert_eq!(b.pass(700), Pass::Refused, "the probe failed: open again");
        assert_eq!(b.pass(1_200), Pass::Go, "the next probe");
        b.success();
        assert_eq!(b.pass(1_201), Pass::Go, "closed");
        assert_eq!(b.pass(1_202), Pass::Go);
    }

    #[test]
    fn a_probe_that_never_reports_is_replaced() {
        let mut b = breaker();
        for t in [0, 1, 2] {
            b.failure(t);
        }
        assert_eq!(b.pass(600), Pass::Go);
        assert_eq!(b.pass(1_000), Pass::Refused);
        assert_eq!(b.pass(1_100), Pass::Go, "a cool-down after the lost probe, another one");
    }

    #[test]
    fn each_product_has_its_own() {
        let guards = ProductGuards::new(BreakerConfig { failures: 1, ..BreakerConfig::default() });
        guards.get("a").record(false, 0);
        assert!(guards.get("a").is_open(1));
        assert!(!guards.get("b").is_open(1));
        assert_eq!(guards.get("a").gate.available_permits(), PER_PRODUCT_CONCURRENCY);
    }
}
