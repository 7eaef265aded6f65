//! Back-channel logout with receipts: the fan-out's first attempt at each product, and the retry
//! ledger's drain (`logout-retry`). Each product is tried on its own and at once, and each outcome
//! is recorded on the revoked session's tombstone as that product's receipt:
//!
//! - answered 2xx: `delivered` (final: nothing turns it back);
//! - anything else, or no answer within the fan-out's inline budget: `pending`, with the attempt
//!   count and the failure's class, and an entry in the retry ledger, due after a backoff;
//! - still failing at the horizon: `failed`, counted by the `LogoutDeliveryFailed` metric.
//!
//! Only store errors fail the caller (the stream record is then delivered again, the drain's
//! entry is tried again once its lease ends); a product's failure never does. A product can
//! receive a logout twice, always with the same `jti`: when an attempt timed out after the
//! product got it, or when an attempt's outcome could not be recorded. Products treat a repeated
//! `jti` as done (README).

use futures::StreamExt;

use crate::domain::{SessionId, UserId};
use crate::logout::{Backchannel, RetryPolicy};
use crate::model::{DeliveryStatus, ProductReceipt};
use crate::store::{RetryEntry, RetryLedger};
use crate::telemetry::emit_metric;
use crate::{SessionStore, StoreError};

use super::now_ms;

/// Ledger entries one drain tries at once (each product is bounded on its own besides).
const DRAIN_CONCURRENCY: usize = 128;

/// Where one attempt left a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Failed; retried from the ledger.
    Retrying,
    /// Failed at the horizon; given up on.
    Failed,
}

/// One attempt's outcome (`Err`: the failure's class).
type Outcome = Result<(), String>;

/// What one drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DrainReport {
    pub due: usize,
    pub delivered: usize,
    pub retrying: usize,
    pub failed: usize,
    /// Entries another drain held, or that needed no attempt (delivered already, tombstone gone).
    pub skipped: usize,
    /// Entries whose store work failed: tried again once their lease ends.
    pub errors: usize,
}

/// The fan-out's first attempt at every product the revoked session's receipts owe a first
/// attempt (`pending` and never tried), each bounded by the inline budget. Products tried before
/// are the ledger's: a redelivered stream record does not post to them again.
pub async fn first_attempts<S: SessionStore + RetryLedger>(
    store: &S,
    backchannel: &Backchannel,
    policy: &RetryPolicy,
    user: &UserId,
    session: SessionId,
    revoked_at_ms: i64,
) -> Result<Vec<(String, Attempt)>, StoreError> {
    let receipts = store.receipts(user, session).await?;
    let give_up_at = revoked_at_ms + policy.horizon_ms;
    let owed = backchannel
        .endpoints()
        .iter()
        .map(|ep| ep.aud.as_str())
        .filter(|aud| receipts.get(*aud).is_none_or(|r| r.status == DeliveryStatus::Pending && r.attempts == 0));
    let tries = owed.map(|aud| async move {
        let attempt = tokio::time::timeout(policy.inline_budget, backchannel.deliver_one(aud, user, session, now_ms()));
        let outcome = match attempt.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.class()),
            // Slower than the budget: the ledger tries again with the full delivery timeout.
            Err(_) => Err("timeout".to_owned()),
        };
        let attempt = conclude(store, policy, user, session, aud, 1, outcome, give_up_at, None).await?;
        Ok::<_, StoreError>((aud.to_owned(), attempt))
    });
    futures::future::join_all(tries).await.into_iter().collect()
}

/// Tries every ledger entry due at `now`, at once (bounded), each claimed first.
pub async fn drain<S: SessionStore + RetryLedger>(
    store: &S,
    backchannel: &Backchannel,
    policy: &RetryPolicy,
    now: i64,
) -> Result<DrainReport, StoreError> {
    let due = store.due_retries(now, policy.batch).await?;
    let mut report = DrainReport { due: due.len(), ..DrainReport::default() };
    let lease_until = now + policy.lease_ms;
    let started = std::time::Instant::now();
    let mut runs = futures::stream::iter(due)
        .map(|entry| async move {
            // Past the run's budget, entries are left to the next drain, unclaimed.
            if started.elapsed() > policy.run_budget {
                return Ok(None);
            }
            let result = retry_one(store, backchannel, policy, &entry, lease_until).await;
            if let Err(e) = &result {
                tracing::warn!(user_id = %entry.user, session_id = %entry.session, aud = entry.aud, error = %e, "retry not settled; tried again after its lease");
            }
            result
        })
        .buffer_unordered(DRAIN_CONCURRENCY);
    while let Some(result) = runs.next().await {
        match result {
            Ok(Some(Attempt::Delivered)) => report.delivered += 1,
            Ok(Some(Attempt::Retrying)) => report.retrying += 1,
            Ok(Some(Attempt::Failed)) => report.failed += 1,
            Ok(None) => report.skipped += 1,
            Err(_) => report.errors += 1,
        }
    }
    Ok(report)
}

/// One ledger entry: claimed, checked against the receipt, tried, concluded. `None`: skipped.
async fn retry_one<S: SessionStore + RetryLedger>(
    store: &S,
    backchannel: &Backchannel,
    policy: &RetryPolicy,
    entry: &RetryEntry,
    lease_until: i64,
) -> Result<Option<Attempt>, StoreError> {
    if !store.claim_retry(entry, now_ms(), lease_until).await? {
        return Ok(None);
    }
    let receipts = store.receipts(&entry.user, entry.session).await?;
    let attempts = match receipts.get(&entry.aud) {
        Some(r) if r.status == DeliveryStatus::Pending => r.attempts,
        // Delivered or given up on already, or the tombstone is gone: nothing owed.
        _ => {
            store.settle_retry(entry, lease_until, None).await?;
            return Ok(None);
        }
    };
    let outcome =
        backchannel.deliver_one(&entry.aud, &entry.user, entry.session, now_ms()).await.map_err(|e| e.class());
    let attempt = conclude(
        store,
        policy,
        &entry.user,
        entry.session,
        &entry.aud,
        attempts + 1,
        outcome,
        entry.give_up_at,
        Some((entry, lease_until)),
    )
    .await?;
    Ok(Some(attempt))
}

/// Records an attempt's outcome: the receipt, and the ledger (the next attempt written before the
/// receipt says `pending`, so a product is never left owed with nothing to retry it).
#[allow(clippy::too_many_arguments)]
async fn conclude<S: SessionStore + RetryLedger>(
    store: &S,
    policy: &RetryPolicy,
    user: &UserId,
    session: SessionId,
    aud: &str,
    attempts: u32,
    outcome: Outcome,
    give_up_at: i64,
    claimed: Option<(&RetryEntry, i64)>,
) -> Result<Attempt, StoreError> {
    let now = now_ms();
    let (receipt, attempt, next) = match outcome {
        Ok(()) => (
            ProductReceipt {
                status: DeliveryStatus::Delivered,
                attempts,
                delivered_at: Some(now),
                last_attempt_at: Some(now),
                error: None,
            },
            Attempt::Delivered,
            None,
        ),
        Err(class) => {
            let next = policy.next_due(attempts, now, give_up_at);
            let status = if next.is_some() { DeliveryStatus::Pending } else { DeliveryStatus::Failed };
            let receipt =
                ProductReceipt { status, attempts, delivered_at: None, last_attempt_at: Some(now), error: Some(class) };
            let next =
                next.map(|due_at| RetryEntry { user: user.clone(), session, aud: aud.to_owned(), due_at, give_up_at });
            let attempt = if next.is_some() { Attempt::Retrying } else { Attempt::Failed };
            (receipt, attempt, next)
        }
    };
    match (claimed, &next) {
        (Some((entry, lease)), next) => {
            // The receipt first: settling removes the only trace of what is owed.
            store.record_receipt(user, session, aud, &receipt).await?;
            store.settle_retry(entry, lease, next.as_ref()).await?;
        }
        (None, Some(next)) => {
            store.schedule_retry(next).await?;
            store.record_receipt(user, session, aud, &receipt).await?;
        }
        (None, None) => store.record_receipt(user, session, aud, &receipt).await?,
    }
    match attempt {
        Attempt::Delivered => emit_metric("LogoutDelivered", "Count", 1, Some(aud)),
        Attempt::Retrying => {
            tracing::warn!(user_id = %user, session_id = %session, aud, attempts, error = receipt.error.as_deref().unwrap_or(""), due_at = next.as_ref().map_or(0, |n| n.due_at), "back-channel logout failed; retrying");
        }
        Attempt::Failed => {
            tracing::error!(user_id = %user, session_id = %session, aud, attempts, error = receipt.error.as_deref().unwrap_or(""), "back-channel logout given up at the horizon");
            emit_metric("LogoutDeliveryFailed", "Count", 1, Some(aud));
        }
    }
    Ok(attempt)
}
