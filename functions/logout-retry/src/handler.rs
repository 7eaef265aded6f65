use active_sessions::queue::{RetryMessage, RetryQueue};
use active_sessions::service::{Attempt, Courier};
use active_sessions::SessionStore;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};

/// What one batch did, for its log line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub delivered: usize,
    pub retrying: usize,
    pub deferred: usize,
    pub failed: usize,
    pub stale: usize,
    /// Reported failed: delivered again by SQS.
    pub errors: usize,
    pub corrupt: usize,
}

/// One batch: every message at once (each product bounded by its own gate), each reported on its
/// own.
pub async fn handle<S: SessionStore, Q: RetryQueue>(
    courier: &Courier<'_, S, Q>,
    event: SqsEvent,
) -> (SqsBatchResponse, Tally) {
    let started = std::time::Instant::now();
    let runs = event.records.iter().map(|record| one(courier, record));
    let mut tally = Tally::default();
    let mut response = SqsBatchResponse::default();
    for (record, outcome) in event.records.iter().zip(futures::future::join_all(runs).await) {
        let failed = match outcome {
            Outcome::Done(Attempt::Delivered) => bump(&mut tally.delivered),
            Outcome::Done(Attempt::Retrying) => bump(&mut tally.retrying),
            Outcome::Done(Attempt::Deferred) => bump(&mut tally.deferred),
            Outcome::Done(Attempt::Failed) => bump(&mut tally.failed),
            Outcome::Done(Attempt::Stale) => bump(&mut tally.stale),
            Outcome::Error => !bump(&mut tally.errors),
            Outcome::Corrupt => !bump(&mut tally.corrupt),
        };
        if failed {
            if let Some(id) = &record.message_id {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id.clone();
                response.batch_item_failures.push(failure);
            }
        }
    }
    tracing::info!(
        messages = event.records.len(),
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        delivered = tally.delivered,
        retrying = tally.retrying,
        deferred = tally.deferred,
        failed = tally.failed,
        stale = tally.stale,
        errors = tally.errors,
        corrupt = tally.corrupt,
        "retry batch done"
    );
    // Partial batch failures are not Lambda errors: this metric is what rolls back a deploy that
    // fails messages (LogoutRetryMessagesFailedAlarm), long before they reach the dead letters.
    let not_handled = tally.errors + tally.corrupt;
    if not_handled > 0 {
        active_sessions::telemetry::emit_metric(
            "RetryMessagesFailed",
            "Count",
            i64::try_from(not_handled).unwrap_or(i64::MAX),
            None,
        );
    }
    (response, tally)
}

/// Counts one; `false`: the message is done (not reported failed).
fn bump(n: &mut usize) -> bool {
    *n += 1;
    false
}

enum Outcome {
    Done(Attempt),
    Error,
    Corrupt,
}

async fn one<S: SessionStore, Q: RetryQueue>(courier: &Courier<'_, S, Q>, record: &SqsMessage) -> Outcome {
    let id = record.message_id.as_deref().unwrap_or("");
    let receives = record.attributes.get("ApproximateReceiveCount").map_or("", String::as_str);
    let message = match RetryMessage::from_body(record.body.as_deref().unwrap_or("")) {
        Ok(m) => m,
        Err(fault) => {
            // Never the body: it names a user and a session at best, and anything at worst.
            tracing::error!(message_id = id, receives, fault, "corrupt retry message; left to the dead-letter queue");
            return Outcome::Corrupt;
        }
    };
    match courier.retry(&message).await {
        Ok(attempt) => Outcome::Done(attempt),
        Err(e) => {
            tracing::warn!(message_id = id, receives, user_id = %message.user, session_id = %message.session, aud = message.aud, error = %e, "retry not recorded; SQS delivers it again");
            Outcome::Error
        }
    }
}
