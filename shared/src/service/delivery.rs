//! Back-channel logout with receipts: the fan-out's first attempt at each product, and each retry
//! from the queue (`logout-retry`). Each product is tried on its own and at once, and each outcome
//! is recorded on the revoked session's tombstone as that product's receipt:
//!
//! - answered 2xx: `delivered` (final: nothing turns it back);
//! - anything else, or no answer within the fan-out's inline budget: `pending`, with the attempt
//!   count and the failure's class, and a message on the retry queue, held back by the backoff;
//! - still failing at the horizon: `failed`, counted by the `LogoutDeliveryFailed` metric.
//!
//! A product whose circuit is open (`breaker`) is not connected to: its delivery is put back on
//! the queue with its delay, and no attempt is counted.
//!
//! Each step is a chain link. The next step's message is queued before the receipt says
//! `pending` (so nothing owed is ever left with nothing to retry it), and the receipt advances
//! only from the step it was read at, naming the new message's link: a message whose link the
//! receipt does not name is stale and dropped, so a step delivered twice (a redelivered stream
//! record, a retry whose receipt write failed) never starts a second chain. A product can
//! receive one logout twice, always with the same `jti` (an attempt that timed out after the
//! product got it, or one whose outcome could not be recorded); products treat a repeated `jti`
//! as done (docs/deploy.md).
//!
//! Store and queue errors fail the caller: the stream record or the queue message is delivered
//! again, and repeats only what was not recorded.

use std::time::Duration;

use crate::breaker::{Pass, ProductGuards};
use crate::domain::{SessionId, UserId};
use crate::logout::{Backchannel, RetryPolicy};
use crate::model::{DeliveryStatus, ProductReceipt, ReceiptStep};
use crate::queue::{QueueError, RetryMessage, RetryQueue};
use crate::store::{ReceiptsStore, SessionsStore, StoreError};
use crate::telemetry::emit_metric;

use super::now_ms;

/// Where one step left a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Failed; its retry is queued.
    Retrying,
    /// Not attempted (the product's circuit is open); put back on the queue with its delay.
    Deferred,
    /// Failed at the horizon; given up on.
    Failed,
    /// Another delivery of the same step got there first (a duplicate): nothing to do.
    Stale,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
}

/// How long an attempt may take: the fan-out's inline budget, or the delivery's own timeouts.
#[derive(Debug, Clone, Copy)]
enum Budget {
    Inline(Duration),
    Full,
}

/// One step of one product's delivery for one session.
struct Step<'m> {
    user: &'m UserId,
    session: SessionId,
    aud: &'m str,
    /// Where the receipt stands; it advances only from here.
    from: ReceiptStep,
    /// The attempt this step makes (attempts so far + 1).
    attempt: u32,
    give_up_at: i64,
    deferrals: u32,
    /// The receipt as read at the step's start.
    current: Option<ProductReceipt>,
    /// The queue message making this step, when the receipt names its link.
    message: Option<&'m RetryMessage>,
}

/// What delivers: the store (receipts), the retry queue, the products' endpoints and each
/// product's gate and breaker in this instance, and the retry policy.
pub struct Courier<'a, S, Q> {
    pub store: &'a S,
    pub queue: &'a Q,
    pub backchannel: &'a Backchannel,
    pub guards: &'a ProductGuards,
    pub policy: &'a RetryPolicy,
}

impl<S: SessionsStore + ReceiptsStore, Q: RetryQueue> Courier<'_, S, Q> {
    /// The fan-out's first attempt at every product the session's receipts owe one (`pending`,
    /// never tried, no retry queued), each bounded by the inline budget from the moment its
    /// request can be sent. Products tried before are the queue's: a redelivered stream record
    /// does not post to them again. The horizon counts from `started_ms`.
    pub async fn first_attempts(
        &self,
        user: &UserId,
        session: SessionId,
        started_ms: i64,
    ) -> Result<Vec<(String, Attempt)>, DeliveryError> {
        let receipts = self.store.receipts(user, session).await?;
        let give_up_at = started_ms + self.policy.horizon_ms;
        let first = ReceiptStep::first();
        let owed = self
            .backchannel
            .endpoints()
            .iter()
            .map(|ep| ep.aud.as_str())
            .filter(|aud| receipts.get(*aud).is_none_or(|r| first.matches(r)));
        let steps = owed.map(|aud| async {
            let current = receipts.get(aud).cloned();
            let step = Step {
                user,
                session,
                aud,
                from: ReceiptStep::first(),
                attempt: 1,
                give_up_at,
                deferrals: 0,
                current,
                message: None,
            };
            let outcome = self.run(&step, Budget::Inline(self.policy.inline_budget)).await?;
            Ok::<_, DeliveryError>((aud.to_owned(), outcome))
        });
        futures::future::join_all(steps).await.into_iter().collect()
    }

    /// One message from the retry queue: the step it names, if the receipt still stands there;
    /// or, if the receipt never moved past the step the message was queued from (its sender's
    /// receipt write failed and was never redone), that step.
    pub async fn retry(&self, message: &RetryMessage) -> Result<Attempt, DeliveryError> {
        let named = ReceiptStep { attempts: message.attempt - 1, link: Some(message.link.clone()) };
        let mut receipts = self.store.receipts(&message.user, message.session).await?;
        let current = receipts.remove(&message.aud);
        let stands_at = |step: &ReceiptStep| current.as_ref().is_some_and(|r| step.matches(r));
        let named_by_receipt = stands_at(&named);
        let from = match message.origin.as_ref().filter(|o| stands_at(o)) {
            _ if named_by_receipt => named,
            // Still where the message was queued from: its link was never recorded.
            Some(origin) => {
                tracing::warn!(user_id = %message.user, session_id = %message.session, aud = message.aud, attempt = message.attempt, "the receipt never recorded this message; taking the step from where it was queued");
                origin.clone()
            }
            // Delivered or given up on already, moved on by another delivery of this step, or the
            // tombstone is gone: nothing owed on this link.
            _ => return Ok(Attempt::Stale),
        };
        let step = Step {
            user: &message.user,
            session: message.session,
            aud: &message.aud,
            from,
            attempt: message.attempt,
            give_up_at: message.give_up_at,
            deferrals: message.deferrals,
            current,
            message: named_by_receipt.then_some(message),
        };
        self.run(&step, Budget::Full).await
    }

    /// Makes the step's attempt (or puts it back while the product's circuit is open) and records
    /// where it left the product.
    async fn run(&self, step: &Step<'_>, budget: Budget) -> Result<Attempt, DeliveryError> {
        let guard = self.guards.get(step.aud);
        if guard.is_open(now_ms()) {
            return self.defer(step).await;
        }
        // The budget starts once the request can be sent: a product's own queue of deliveries is
        // not its failure.
        let slot = guard.gate.acquire().await.ok();
        if guard.pass(now_ms()) == Pass::Refused {
            return self.defer(step).await;
        }
        let attempt = self.backchannel.deliver_one(step.aud, step.user, step.session, now_ms());
        let outcome = match budget {
            Budget::Inline(limit) => match tokio::time::timeout(limit, attempt).await {
                Ok(result) => result.map_err(|e| e.class()),
                // Slower than the budget: the queue tries again with the full delivery timeout.
                Err(_) => Err("timeout".to_owned()),
            },
            Budget::Full => attempt.await.map_err(|e| e.class()),
        };
        guard.record(outcome.is_ok(), now_ms());
        drop(slot);
        self.conclude(step, outcome).await
    }

    /// Puts a step back on the queue without an attempt, the wait doubled as a failed attempt's
    /// would be, the receipt's attempts unchanged. A message the receipt names goes back as it is
    /// (its link, one more deferral), and the table is not written: while a product is down, its
    /// owed deliveries cost the queue only. Else (the fan-out's first step, or a message taking
    /// up its origin) a new link, recorded on the receipt. At the horizon, given up on.
    async fn defer(&self, step: &Step<'_>) -> Result<Attempt, DeliveryError> {
        let now = now_ms();
        let error = step.current.as_ref().and_then(|r| r.error.clone()).unwrap_or_else(|| "circuit_open".into());
        let last_attempt_at = step.current.as_ref().and_then(|r| r.last_attempt_at);
        if now >= step.give_up_at {
            let receipt = ProductReceipt {
                status: DeliveryStatus::Failed,
                attempts: step.from.attempts,
                delivered_at: None,
                last_attempt_at,
                error: Some(error),
                link: None,
            };
            return self.advance(step, &receipt, Attempt::Failed).await;
        }
        let deferrals = step.deferrals.saturating_add(1);
        let wait = self.policy.backoff(step.from.attempts.saturating_add(deferrals)).min(step.give_up_at - now);
        let wait = Duration::from_millis(wait.unsigned_abs());
        if let Some(message) = step.message {
            // A copy left by a failed delete is the same link at the same step: whichever moves
            // the receipt first wins, and the other is stale.
            self.queue.send(&RetryMessage { deferrals, ..message.clone() }, wait).await?;
            let (user, session, aud) = (step.user, step.session, step.aud);
            tracing::info!(user_id = %user, session_id = %session, aud, attempts = step.from.attempts, "product's circuit is open; put back on the queue");
            emit_metric("LogoutDeferred", "Count", 1, Some(aud));
            return Ok(Attempt::Deferred);
        }
        let next =
            RetryMessage::new(step.user, step.session, step.aud, step.attempt, step.give_up_at, deferrals, &step.from)?;
        self.queue.send(&next, wait).await?;
        let receipt = ProductReceipt {
            status: DeliveryStatus::Pending,
            attempts: step.from.attempts,
            delivered_at: None,
            last_attempt_at,
            error: Some(error),
            link: Some(next.link),
        };
        self.advance(step, &receipt, Attempt::Deferred).await
    }

    /// Records an attempt's outcome: `delivered`; or the next attempt queued, then `pending`
    /// naming it; or, at the horizon, `failed`.
    async fn conclude(&self, step: &Step<'_>, outcome: Result<(), String>) -> Result<Attempt, DeliveryError> {
        let now = now_ms();
        let made = step.attempt;
        let (receipt, attempt) = match outcome {
            Ok(()) => (
                ProductReceipt {
                    status: DeliveryStatus::Delivered,
                    attempts: made,
                    delivered_at: Some(now),
                    last_attempt_at: Some(now),
                    error: None,
                    link: None,
                },
                Attempt::Delivered,
            ),
            Err(class) => match self.policy.next_due(made, now, step.give_up_at) {
                Some(due) => {
                    let next =
                        RetryMessage::new(step.user, step.session, step.aud, made + 1, step.give_up_at, 0, &step.from)?;
                    self.queue.send(&next, Duration::from_millis((due - now).unsigned_abs())).await?;
                    let receipt = ProductReceipt {
                        status: DeliveryStatus::Pending,
                        attempts: made,
                        delivered_at: None,
                        last_attempt_at: Some(now),
                        error: Some(class),
                        link: Some(next.link),
                    };
                    (receipt, Attempt::Retrying)
                }
                None => (
                    ProductReceipt {
                        status: DeliveryStatus::Failed,
                        attempts: made,
                        delivered_at: None,
                        last_attempt_at: Some(now),
                        error: Some(class),
                        link: None,
                    },
                    Attempt::Failed,
                ),
            },
        };
        self.advance(step, &receipt, attempt).await
    }

    /// Writes the receipt if it still stands at the step's start; logs and counts the outcome.
    async fn advance(
        &self,
        step: &Step<'_>,
        receipt: &ProductReceipt,
        attempt: Attempt,
    ) -> Result<Attempt, DeliveryError> {
        let (user, session, aud) = (step.user, step.session, step.aud);
        if !self.store.advance_receipt(user, session, aud, &step.from, receipt).await? {
            // Another delivery of this step advanced it first; a message queued above names a
            // link the receipt does not, and is dropped when it comes due.
            tracing::info!(user_id = %user, session_id = %session, aud, attempts = receipt.attempts, "receipt moved on already; this delivery of the step is a duplicate");
            return Ok(Attempt::Stale);
        }
        let error = receipt.error.as_deref().unwrap_or("");
        match attempt {
            Attempt::Delivered => emit_metric("LogoutDelivered", "Count", 1, Some(aud)),
            Attempt::Retrying => {
                tracing::warn!(user_id = %user, session_id = %session, aud, attempts = receipt.attempts, error, "back-channel logout failed; retrying");
            }
            Attempt::Deferred => {
                tracing::info!(user_id = %user, session_id = %session, aud, attempts = receipt.attempts, "product's circuit is open; put back on the queue");
                emit_metric("LogoutDeferred", "Count", 1, Some(aud));
            }
            Attempt::Failed => {
                tracing::error!(user_id = %user, session_id = %session, aud, attempts = receipt.attempts, error, "back-channel logout given up at the horizon");
                emit_metric("LogoutDeliveryFailed", "Count", 1, Some(aud));
            }
            Attempt::Stale => {}
        }
        Ok(attempt)
    }
}
