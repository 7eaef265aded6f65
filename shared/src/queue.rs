//! The back-channel retry queue: one SQS message per delivery still owed to a product, held back
//! by its backoff (`DelaySeconds`) and consumed by `logout-retry` through an event source
//! mapping. SQS spreads the messages itself, so no table partition takes every owed delivery,
//! and its fair queues keep one product's backlog from raising the others' dwell time: each
//! message's `MessageGroupId` is its product.
//!
//! A message names the attempt it is to make, the receipt's link it belongs to, and the step it
//! was made from (its origin). The receipt on the tombstone names the one link allowed to make the
//! next attempt, and advances only from the step it was read at, so a message delivered twice is
//! stale and dropped: a delivery never runs as two chains. A message whose sender queued it but
//! never recorded its link (the receipt write failed, and the stream record or queue message that
//! sent it was given up on) finds the receipt still at its origin, and takes the step from there:
//! conditionally, so if the sender's redelivery gets there first, this message is the stale one.

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{SessionId, UserId};
use crate::env::ConfigError;

/// SQS holds a message back at most this long (`DelaySeconds` is 0-900).
pub const MAX_DELAY: Duration = Duration::from_secs(900);
/// The message format's version: a message of another version is corrupt here.
const VERSION: u8 = 1;

/// A delivery still owed to one product for one revoked session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryMessage {
    pub v: u8,
    pub user: UserId,
    pub session: SessionId,
    /// The product (`aud`).
    pub aud: String,
    /// The attempt this message makes (1: the first, when the fan-out could not make it).
    pub attempt: u32,
    /// The receipt's link this message carries: it may act only while the receipt names it.
    pub link: String,
    /// Epoch ms: the horizon; a product still failing then is given up on (`failed`).
    pub give_up_at: i64,
    /// How many times the attempt was put back without being made (the product's circuit was
    /// open): each one doubles the wait, as a failed attempt would.
    #[serde(default)]
    pub deferrals: u32,
    /// The receipt's step when this message was queued, before its sender recorded the link:
    /// if the receipt is still there when the message comes due, the recording never happened,
    /// and this message takes the step from there.
    #[serde(default)]
    pub origin: Option<crate::model::ReceiptStep>,
}

impl RetryMessage {
    /// A message for `attempt`, queued from the receipt's step `origin`, with a fresh link (128
    /// random bits from the OS generator).
    pub fn new(
        user: &UserId,
        session: SessionId,
        aud: &str,
        attempt: u32,
        give_up_at: i64,
        deferrals: u32,
        origin: &crate::model::ReceiptStep,
    ) -> Result<Self, QueueError> {
        let mut link = [0u8; 16];
        getrandom::fill(&mut link).map_err(|e| QueueError(Box::new(e)))?;
        Ok(Self {
            v: VERSION,
            user: user.clone(),
            session,
            aud: aud.to_owned(),
            attempt,
            link: hex::encode(link),
            give_up_at,
            deferrals,
            origin: Some(origin.clone()),
        })
    }

    pub fn to_body(&self) -> String {
        // Plain fields and strings: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A message body as this code writes it; anything else is corrupt (`Err` names the fault,
    /// never the body).
    pub fn from_body(body: &str) -> Result<Self, String> {
        let message: Self = serde_json::from_str(body).map_err(|e| format!("{:?} error", e.classify()))?;
        if message.v != VERSION {
            return Err(format!("version {}", message.v));
        }
        if message.attempt == 0 || message.aud.is_empty() || message.link.is_empty() {
            return Err("empty field".into());
        }
        // A message is queued from a step before its own: the attempts it was made after are
        // fewer than the one it makes, and its origin's link is never its own.
        if let Some(origin) = &message.origin {
            if origin.attempts >= message.attempt || origin.link.as_deref() == Some(message.link.as_str()) {
                return Err("origin".into());
            }
        }
        Ok(message)
    }
}

/// `MessageGroupId` for a product: its `aud` when SQS takes it as it is (1-128 printable ASCII
/// characters), else a digest of it.
pub fn group_id(aud: &str) -> String {
    if !aud.is_empty() && aud.len() <= 128 && aud.bytes().all(|b| b.is_ascii_graphic()) {
        return aud.to_owned();
    }
    use sha2::{Digest, Sha256};
    format!("aud-{}", hex::encode(&Sha256::digest(aud.as_bytes())[..16]))
}

/// A delay as SQS's `DelaySeconds`: whole seconds, rounded up, at most 900.
pub fn delay_seconds(delay: Duration) -> i32 {
    let secs = delay.min(MAX_DELAY).as_millis().div_ceil(1000);
    i32::try_from(secs).unwrap_or(900)
}

#[derive(Debug, thiserror::Error)]
#[error("the retry queue did not take the message")]
pub struct QueueError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

pub trait RetryQueue: Send + Sync {
    /// Queues `message`, to be received no sooner than `delay` from now (rounded up to whole
    /// seconds, at most 900 s).
    fn send(&self, message: &RetryMessage, delay: Duration) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// The queue on SQS (`LOGOUT_RETRY_QUEUE_URL`; locally, moto's server through
/// `AWS_ENDPOINT_URL_SQS`).
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self { client, url: url.into() }
    }

    /// `LOGOUT_RETRY_QUEUE_URL`, every call bounded as the store's are (`timeouts`).
    pub async fn from_env(timeouts: &crate::config::StoreTimeouts) -> Result<Self, ConfigError> {
        let url = std::env::var("LOGOUT_RETRY_QUEUE_URL")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .ok_or(ConfigError::Missing("LOGOUT_RETRY_QUEUE_URL"))?;
        let config = timeouts.sdk_loader().load().await;
        Ok(Self::new(aws_sdk_sqs::Client::new(&config), url))
    }
}

impl RetryQueue for SqsQueue {
    async fn send(&self, message: &RetryMessage, delay: Duration) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(message.to_body())
            .delay_seconds(delay_seconds(delay))
            .message_group_id(group_id(&message.aud))
            .send()
            .await
            .map_err(|e| QueueError(Box::new(e)))?;
        Ok(())
    }
}

/// The queue in memory, for handler tests (feature `test-utils`): it keeps what was sent, and
/// can be told to refuse.
#[cfg(any(test, feature = "test-utils"))]
#[derive(Default)]
pub struct MemoryQueue {
    sent: std::sync::Mutex<Vec<(RetryMessage, Duration)>>,
    refusing: std::sync::atomic::AtomicBool,
}

#[cfg(any(test, feature = "test-utils"))]
impl MemoryQueue {
    /// Every message sent so far, with its delay, and empties the queue.
    pub fn take(&self) -> Vec<(RetryMessage, Duration)> {
        std::mem::take(&mut *self.sent.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn len(&self) -> usize {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes every later send fail (`false`: succeed again).
    pub fn refuse(&self, refusing: bool) {
        self.refusing.store(refusing, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(any(test, feature = "test-utils"))]
impl RetryQueue for MemoryQueue {
    async fn send(&self, message: &RetryMessage, delay: Duration) -> Result<(), QueueError> {
        if self.refusing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(QueueError("injected: the queue refuses".into()));
        }
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).push((message.clone(), delay));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips_and_anything_else_is_corrupt() {
        let m = RetryMessage::new(
            &UserId::parse("alice").unwrap(),
            SessionId::new(),
            "codex",
            2,
            1_000,
            0,
            &crate::model::ReceiptStep::first(),
        )
        .unwrap();
        assert_eq!(RetryMessage::from_body(&m.to_body()).unwrap(), m);
        for bad in [
            "",
            "not json",
            r#"{"v":1}"#,
            &m.to_body().replace("\"v\":1", "\"v\":9"),
            &m.to_body().replace("\"attempt\":2", "\"attempt\":0"),
            &m.to_body().replace("\"user\":\"alice\"", "\"user\":\"\""),
            &m.to_body().replace('}', ",\"extra\":1}"),
        ] {
            let err = RetryMessage::from_body(bad).expect_err(bad);
            assert!(!err.contains("alice"), "an error never quotes the body: {err}");
        }
    }

    #[test]
    fn delays_are_whole_seconds_up_to_900() {
        assert_eq!(delay_seconds(Duration::ZERO), 0);
        assert_eq!(delay_seconds(Duration::from_millis(1)), 1);
        assert_eq!(delay_seconds(Duration::from_millis(1_000)), 1);
        assert_eq!(delay_seconds(Duration::from_millis(1_001)), 2);
        assert_eq!(delay_seconds(Duration::from_secs(3_600)), 900);
    }

    #[test]
    fn a_group_id_is_the_product_or_its_digest() {
        assert_eq!(group_id("chat-web"), "chat-web");
        assert_eq!(group_id("https://chat.example/app"), "https://chat.example/app");
        let long = "x".repeat(200);
        for odd in [long.as_str(), "with space", "é"] {
            let id = group_id(odd);
            assert!(id.starts_with("aud-") && id.len() == 36, "{id}");
        }
        assert_ne!(group_id("with space"), group_id("with  space"));
    }
}
