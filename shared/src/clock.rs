//! The clock: a leaf every layer may read (the service, the caches, telemetry, logout tokens).

use time::OffsetDateTime;

/// Now, in epoch milliseconds.
pub fn now_ms() -> i64 {
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
}
