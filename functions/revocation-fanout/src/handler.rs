use active_sessions::cache::TokenCache;
use active_sessions::logout::{Backchannel, LogoutError};
use active_sessions::service::{self, sweep_watermark};
use active_sessions::{Policy, SessionStore};
use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};

use crate::classify::{classify, Action};

#[derive(Debug, thiserror::Error)]
enum RecordError {
    #[error("unreadable record")]
    Classify(#[from] crate::classify::ClassifyError),
    #[error("store error")]
    Store(#[from] active_sessions::StoreError),
    #[error("token cache error")]
    Cache(#[from] redis::RedisError),
    #[error("back-channel logout failed")]
    Logout(#[from] LogoutError),
}

/// What the consumer acts with: the store, the policy, the token caches, the product endpoints.
pub struct Fanout<'a, S> {
    pub store: &'a S,
    pub policy: &'a Policy,
    pub cache: &'a TokenCache,
    pub backchannel: &'a Backchannel,
}

/// Processes a batch record by record. A record that fails (unreadable, or a store error) is
/// reported by its sequence number; the others are processed regardless, so one poison record
/// never blocks the rest. Every action is idempotent, so re-delivery is harmless.
pub async fn handle<S: SessionStore>(f: &Fanout<'_, S>, event: Event) -> DynamoDbEventResponse {
    let mut response = DynamoDbEventResponse::default();
    for record in &event.records {
        if let Err(err) = process(f, record).await {
            let sequence = record.change.sequence_number.clone();
            tracing::error!(event_id = %record.event_id, sequence = ?sequence, error = %err, "record failed");
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = sequence;
            response.batch_item_failures.push(failure);
        }
    }
    response
}

async fn process<S: SessionStore>(f: &Fanout<'_, S>, record: &EventRecord) -> Result<(), RecordError> {
    let (store, policy, cache) = (f.store, f.policy, f.cache);
    match classify(record)? {
        Action::Ignore => {}
        Action::Watermark { user, watermark, revocation } => {
            // Caches honour the watermark at once; the sweep then gives each session its record.
            cache.invalidate_user(&user, watermark).await?;
            let revoked = sweep_watermark(store, policy, &user, watermark, &revocation).await?;
            tracing::info!(user_id = %user, revoked, watermark = watermark.before_ms, "revoke-all swept");
        }
        Action::SessionRevoked { user, session, token_hash, revoked_at_ms, reason } => {
            cache.invalidate_token(&token_hash).await?;
            f.backchannel.deliver(&user, session, service::now_ms()).await?;
            let lag_ms = service::now_ms() - revoked_at_ms;
            tracing::info!(user_id = %user, session_id = %session, reason = ?reason, propagation_lag_ms = lag_ms, "revocation seen");
            emit_lag_metric(lag_ms);
        }
        Action::SessionExpired { user, session, token_hash, device_label, expires_at_ms } => {
            cache.invalidate_token(&token_hash).await?;
            service::record_expiry(store, policy, &user, session, &device_label, expires_at_ms).await?;
            tracing::info!(user_id = %user, session_id = %session, "session expired");
        }
    }
    Ok(())
}

/// The propagation lag as a CloudWatch Embedded Metric Format line (stdout becomes the log), by
/// function name so that stacks sharing an account (dev, prod) keep their own series.
fn emit_lag_metric(lag_ms: i64) {
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".into());
    let line = serde_json::json!({
        "_aws": {
            "Timestamp": service::now_ms(),
            "CloudWatchMetrics": [{
                "Namespace": "ActiveSessions",
                "Dimensions": [["FunctionName"]],
                "Metrics": [{"Name": "PropagationLagMs", "Unit": "Milliseconds"}]
            }]
        },
        "FunctionName": function,
        "PropagationLagMs": lag_ms
    });
    println!("{line}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use active_sessions::cache::CacheConfig;
    use active_sessions::domain::{ClientKind, UserId};
    use active_sessions::model::SessionStatus;
    use active_sessions::store::MemoryStore;
    use active_sessions::testing::sign_in;

    async fn run(store: &MemoryStore, event: Event) -> DynamoDbEventResponse {
        let cache = TokenCache::new(&CacheConfig::default()).await.unwrap();
        let backchannel = Backchannel::disabled();
        let f = Fanout { store, policy: &Policy::default(), cache: &cache, backchannel: &backchannel };
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
