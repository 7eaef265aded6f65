use active_sessions::breaker::ProductGuards;
use active_sessions::cache::{Teller, TokenCache};
use active_sessions::domain::{SessionId, UserId};
use active_sessions::logout::{Backchannel, RetryPolicy};
use active_sessions::model::CachesToldBy;
use active_sessions::queue::RetryQueue;
use active_sessions::service::{self, sweep_watermark, Courier};
use active_sessions::telemetry::emit_metric;
use active_sessions::{Policy, SessionStore};
use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use tokio::sync::Semaphore;

use crate::classify::{classify, Action};

/// Records whose store and cache work runs at once, at most. Back-channel deliveries are bounded
/// per product instead (`breaker::PER_PRODUCT_CONCURRENCY`) and by the inline budget, so a slow
/// product never holds these.
const RECORD_CONCURRENCY: usize = 16;

#[derive(Debug, thiserror::Error)]
enum RecordError {
    #[error("unreadable record")]
    Classify(#[from] crate::classify::ClassifyError),
    #[error("store error")]
    Store(#[from] active_sessions::StoreError),
    #[error("delivery not recorded")]
    Delivery(#[from] service::DeliveryError),
}

/// What the consumer acts with: the store, the policy, the token caches, the product endpoints,
/// the retry queue, each product's gate and breaker, and how products that do not take a logout
/// are retried.
pub struct Fanout<'a, S, Q> {
    pub store: &'a S,
    pub policy: &'a Policy,
    pub cache: &'a TokenCache,
    pub backchannel: &'a Backchannel,
    pub queue: &'a Q,
    pub guards: &'a ProductGuards,
    pub retry: &'a RetryPolicy,
}

impl<S, Q> Fanout<'_, S, Q> {
    fn courier(&self) -> Courier<'_, S, Q> {
        Courier {
            store: self.store,
            queue: self.queue,
            backchannel: self.backchannel,
            guards: self.guards,
            policy: self.retry,
        }
    }
}

/// Processes a batch: the records of one item in order, those of different items at once (store
/// and cache work at most `RECORD_CONCURRENCY` at a time). A record that fails is reported by its
/// sequence number; the others are processed regardless, so one poison record never blocks the
/// rest.
///
/// Each effect of a record is attempted on its own. A record fails (and Lambda delivers it again)
/// only for a store write or a queue send that must be retried: the sweep, an expiry's audit
/// event and tombstone, the caches' receipt, a product's receipt, a retry's message. A product
/// that does not take its logout is the retry queue's (`Courier::first_attempts`), never a reason
/// to hold the shard. Token caches are not worth a retry that would hold the shard either: a
/// failed invalidation is logged, and the propagation window ends the cached entry anyway.
/// Redeliveries repeat only idempotent effects: products tried already are skipped (their
/// receipts are on the tombstone), and the sweep, the expiry's event and tombstone write nothing
/// twice.
pub async fn handle<S: SessionStore, Q: RetryQueue>(f: &Fanout<'_, S, Q>, event: Event) -> DynamoDbEventResponse {
    let gate = Semaphore::new(RECORD_CONCURRENCY);
    let mut items: Vec<(Option<ItemKey>, Vec<&EventRecord>)> = Vec::new();
    for record in &event.records {
        let key = item_key(record);
        match items.iter_mut().find(|(k, _)| key.is_some() && *k == key) {
            Some((_, records)) => records.push(record),
            None => items.push((key, vec![record])),
        }
    }
    let runs = items.iter().map(|(_, records)| {
        let gate = &gate;
        async move {
            let mut failed = Vec::new();
            for record in records {
                if let Err(err) = process(f, record, gate).await {
                    let sequence = record.change.sequence_number.clone();
                    tracing::error!(event_id = %record.event_id, sequence = ?sequence, error = %err, "record failed");
                    failed.push(sequence);
                }
            }
            failed
        }
    });
    let started = std::time::Instant::now();
    let mut response = DynamoDbEventResponse::default();
    for sequence in futures::future::join_all(runs).await.into_iter().flatten() {
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = sequence;
        response.batch_item_failures.push(failure);
    }
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(
        records = event.records.len(),
        failed = response.batch_item_failures.len(),
        elapsed_ms,
        "batch done"
    );
    response
}

/// An item's partition and sort key.
type ItemKey<'a> = (&'a str, &'a str);

/// The record's item, to keep one item's records in order.
fn item_key(record: &EventRecord) -> Option<ItemKey<'_>> {
    let key = |name: &str| match record.change.keys.get(name) {
        Some(serde_dynamo::AttributeValue::S(v)) => Some(v.as_str()),
        _ => None,
    };
    Some((key(active_sessions::keys::PK)?, key(active_sessions::keys::SK)?))
}

async fn process<S: SessionStore, Q: RetryQueue>(
    f: &Fanout<'_, S, Q>,
    record: &EventRecord,
    gate: &Semaphore,
) -> Result<(), RecordError> {
    let (store, policy, cache) = (f.store, f.policy, f.cache);
    let action = classify(record)?;
    let slot = gate.acquire().await.ok();
    match action {
        Action::Ignore => {}
        Action::Watermark { user, watermark, revocation, event } => {
            // Caches honour the watermark at once; the sweep then gives each session its record.
            if let Err(e) = cache.invalidate_user(&user, watermark, Teller::Stream, service::now_ms()).await {
                tracing::warn!(user_id = %user, error = %e, "token cache not told of the watermark; entries end with the window");
            }
            let revoked = sweep_watermark(store, policy, &user, watermark, &revocation, event).await?;
            tracing::info!(user_id = %user, revoked, watermark = watermark.before_ms, "revoke-all swept");
        }
        Action::SessionRevoked { user, session, token_hash, signed_in_at, revoked_at_ms, reason } => {
            let ended = Ended { user: &user, session, signed_in_at, token_hash: &token_hash, at_ms: revoked_at_ms };
            let told = tell(f, &ended, revoked_at_ms, slot).await?;
            let lag_ms = service::now_ms() - revoked_at_ms;
            tracing::info!(user_id = %user, session_id = %session, reason = ?reason, products = told, propagation_lag_ms = lag_ms, "revocation seen");
            emit_lag_metric(lag_ms);
        }
        Action::SessionExpired { session } => {
            // The horizon counts from now: TTL removes an expired session up to days late.
            let now = service::now_ms();
            service::record_expiry(store, policy, &session, f.retry.receipts_until_secs(now)).await?;
            let ended = Ended {
                user: &session.user_id,
                session: session.session_id,
                signed_in_at: session.signed_in_at,
                token_hash: &session.token_hash,
                at_ms: session.expires_at.saturating_mul(1000),
            };
            let told = tell(f, &ended, now, slot).await?;
            tracing::info!(user_id = %ended.user, session_id = %ended.session, products = told, "session expired");
        }
    }
    Ok(())
}

/// A session that ended (revoked, or expired) at `at_ms`.
struct Ended<'a> {
    user: &'a UserId,
    session: SessionId,
    signed_in_at: i64,
    token_hash: &'a str,
    at_ms: i64,
}

/// What a session that ended owes: the token caches let go, the caches' receipt with a `pending`
/// receipt per product, then each product's first attempt. The horizon of the products' retries
/// counts from `started_ms`. The record's store slot is released before the products are tried.
/// Returns how many products were tried.
async fn tell<S: SessionStore, Q: RetryQueue>(
    f: &Fanout<'_, S, Q>,
    ended: &Ended<'_>,
    started_ms: i64,
    slot: Option<tokio::sync::SemaphorePermit<'_>>,
) -> Result<usize, RecordError> {
    let Ended { user, session, .. } = *ended;
    // The receipt's cache time: when the revoke's write-through told them (its marker, or its
    // watermark covering this session), else now that this call told them; if Redis could not be
    // told, when the window ends every cached entry (the latest they can live).
    let covered = Some((ended.signed_in_at, session));
    let (caches_at, by) = match f
        .cache
        .invalidate_token(user, ended.token_hash, covered, Teller::Stream, service::now_ms())
        .await
    {
        Ok(told) => (told.at_ms, told_by(told.by)),
        Err(e) => {
            tracing::warn!(user_id = %user, session_id = %session, error = %e, "token cache not told; the entry ends with the window");
            (ended.at_ms + f.cache.window_ms(), CachesToldBy::Window)
        }
    };
    let products: Vec<String> = f.backchannel.endpoints().iter().map(|e| e.aud.clone()).collect();
    let keep_until = f.retry.receipts_until_secs(started_ms);
    f.store.record_caches_invalidated(user, session, caches_at, by, &products, keep_until).await?;
    drop(slot);
    if !f.backchannel.enabled() {
        return Ok(0);
    }
    Ok(f.courier().first_attempts(user, session, started_ms).await?.len())
}

fn told_by(teller: Teller) -> CachesToldBy {
    match teller {
        Teller::WriteThrough => CachesToldBy::WriteThrough,
        Teller::Stream => CachesToldBy::Stream,
    }
}

/// The propagation lag as a CloudWatch Embedded Metric Format line.
fn emit_lag_metric(lag_ms: i64) {
    emit_metric("PropagationLagMs", "Milliseconds", lag_ms, None);
}

#[cfg(test)]
mod tests {
    use super::*;
    use active_sessions::cache::CacheConfig;
    use active_sessions::domain::{ClientKind, UserId};
    use active_sessions::model::SessionStatus;
    use active_sessions::queue::MemoryQueue;
    use active_sessions::store::MemoryStore;
    use active_sessions::testing::sign_in;

    async fn run(store: &MemoryStore, event: Event) -> DynamoDbEventResponse {
        let cache = TokenCache::new(&CacheConfig::default()).await.unwrap();
        let backchannel = Backchannel::disabled();
        let retry = RetryPolicy::default();
        let queue = MemoryQueue::default();
        let guards = ProductGuards::default();
        let f = Fanout {
            store,
            policy: &Policy::default(),
            cache: &cache,
            backchannel: &backchannel,
            queue: &queue,
            guards: &guards,
            retry: &retry,
        };
        handle(&f, event).await
    }

    fn fixture(name: &str) -> Event {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("event JSON")
    }

    #[tokio::test]
    async fn reports_only_the_poison_record() {
        let store = MemoryStore::new();
        let res = run(&store, fixture("batch-mixed.json")).await;
        let failed: Vec<_> = res.batch_item_failures.iter().map(|f| f.item_identifier.clone().unwrap()).collect();
        let event = fixture("batch-mixed.json");
        assert_eq!(failed, vec![event.records[1].change.sequence_number.clone().unwrap()]);
    }

    #[tokio::test]
    async fn a_ttl_delete_records_one_expiry_event_even_when_redelivered() {
        let store = MemoryStore::new();
        for _ in 0..2 {
            let res = run(&store, fixture("remove-ttl.json")).await;
            assert!(res.batch_item_failures.is_empty());
        }
        let events = store.audit_events(&UserId::parse("alice").unwrap());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, active_sessions::model::RevokeReason::Expired);
        assert_eq!(events[0].device_labels, vec!["Chrome on macOS".to_owned()]);
    }

    #[tokio::test]
    async fn a_watermark_record_sweeps_the_sessions_it_covers_once() {
        let store = MemoryStore::new();
        let a = sign_in(&store, "alice", ClientKind::Browser).await;
        let b = sign_in(&store, "alice", ClientKind::Browser).await;
        let mut event = fixture("insert-watermark.json");
        // Point the fixture's watermark at now, keeping `a`.
        let image = &mut event.records[0].change.new_image;
        image.insert("RevokedBefore".into(), serde_dynamo::AttributeValue::N(service::now_ms().to_string()));
        image.insert("RevokeKeep".into(), serde_dynamo::AttributeValue::S(a.session_id.to_string()));
        for _ in 0..2 {
            let res = run(&store, event.clone()).await;
            assert!(res.batch_item_failures.is_empty(), "duplicate delivery is harmless");
        }
        let alice = UserId::parse("alice").unwrap();
        assert_eq!(store.get(&alice, b.session_id).unwrap().status, SessionStatus::Revoked);
        assert_eq!(store.get(&alice, a.session_id).unwrap().status, SessionStatus::Active);
        assert!(store.audit_events(&alice).is_empty(), "the revoke-all's own event covers the sweep");
    }
}
