//! The back-channel retry ledger: one entry per logout a product still has to receive, sorted by
//! when its next attempt is due. The fan-out writes an entry when a product's first attempt fails
//! (or does not answer within the inline budget); `logout-retry`, on a schedule, takes the entries
//! that are due, tries again, and reschedules, settles or gives up on each.
//!
//! Entries are claimed with a lease before an attempt, so two drains that overlap never post the
//! same logout at once, and a drain that dies mid-attempt leaves its entries to the next one once
//! the lease runs out.

use std::future::Future;

use crate::domain::{SessionId, UserId};
use crate::store::StoreError;

/// A delivery still owed to one product for one revoked session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryEntry {
    pub user: UserId,
    pub session: SessionId,
    /// The product (`aud`).
    pub aud: String,
    /// Epoch ms: when the next attempt is due.
    pub due_at: i64,
    /// Epoch ms: the horizon; a product still failing then is given up on (`failed`).
    pub give_up_at: i64,
}

pub trait RetryLedger: Send + Sync {
    /// Writes an entry (idempotent for the same due time).
    fn schedule_retry(&self, entry: &RetryEntry) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Up to `limit` entries due at or before `now_ms` and not leased past it, earliest first
    /// (strongly consistent): entries a dead drain still holds never crowd out the rest.
    fn due_retries(&self, now_ms: i64, limit: u32) -> impl Future<Output = Result<Vec<RetryEntry>, StoreError>> + Send;

    /// Takes an entry for one attempt until `lease_until` (epoch ms). `false` when the entry is
    /// gone or another drain holds an unexpired lease on it.
    fn claim_retry(
        &self,
        entry: &RetryEntry,
        now_ms: i64,
        lease_until: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Ends a claimed entry's attempt: replaced by `next` (the next attempt, due later) in one
    /// transaction, or removed when `next` is `None`. Only while this claim's lease is the
    /// entry's lease; otherwise nothing is written.
    fn settle_retry(
        &self,
        entry: &RetryEntry,
        lease_until: i64,
        next: Option<&RetryEntry>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
