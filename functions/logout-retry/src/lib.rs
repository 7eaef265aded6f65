//! `logout-retry`: drains the back-channel retry ledger. Deployed, an EventBridge schedule invokes
//! it every minute; on the local stack, the stream poller does, every second. The event's content
//! is not read: each run tries what is due at its own clock.

use active_sessions::logout::{Backchannel, RetryPolicy};
use active_sessions::service::{self, DrainReport};
use active_sessions::store::RetryLedger;
use active_sessions::{SessionStore, StoreError};

/// One drain: every entry due now, each tried, then rescheduled, settled or given up on.
pub async fn handle<S: SessionStore + RetryLedger>(
    store: &S,
    backchannel: &Backchannel,
    policy: &RetryPolicy,
) -> Result<DrainReport, StoreError> {
    let started = std::time::Instant::now();
    let report = service::drain(store, backchannel, policy, service::now_ms()).await?;
    if report.due > 0 {
        tracing::info!(
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            due = report.due,
            delivered = report.delivered,
            retrying = report.retrying,
            failed = report.failed,
            skipped = report.skipped,
            errors = report.errors,
            "retry ledger drained"
        );
    }
    Ok(report)
}
