//! A long-running validator's side: the invalidation channel, applied to L1.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::redis_client::open_subscription;
use super::{forged, Invalidation, MacKey, TokenCache, CHANNEL};

impl TokenCache {
    /// Subscribes to the invalidation channel and applies every message to L1, for as long as the
    /// validator runs. For long-running validators; returns at once.
    ///
    /// L1 answers only while the channel is live: if the first subscription fails, and whenever
    /// the connection is down, every validation goes on to L2 or DynamoDB. When the
    /// connection drops it reconnects and subscribes again (backing off from 100 ms to 5 s), and
    /// empties L1, whose entries may have missed invalidations meanwhile.
    pub async fn subscribe(self: &Arc<Self>) -> Result<tokio::task::JoinHandle<()>, redis::RedisError> {
        let Some(redis) = &self.redis else {
            return Ok(tokio::spawn(async {}));
        };
        let (client, mac) = (redis.client.clone(), redis.mac.clone());
        let first = open_subscription(&client).await;
        if let Err(e) = &first {
            self.set_l1_live(false);
            tracing::warn!(error = %e, "invalidation channel down at start; L1 off until it is up");
        }
        let cache = Arc::clone(self);
        Ok(tokio::spawn(async move {
            let mut subscription = first.ok();
            let mut backoff = Duration::from_millis(100);
            loop {
                if let Some(mut pubsub) = subscription.take() {
                    backoff = Duration::from_millis(100);
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        cache.receive(&mac, &msg);
                    }
                    cache.set_l1_live(false);
                    cache.clear_l1();
                    tracing::warn!("invalidation channel lost; L1 off and emptied, reconnecting");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                match open_subscription(&client).await {
                    Ok(pubsub) => {
                        // Entries filled while the channel was down may have missed invalidations.
                        cache.clear_l1();
                        cache.set_l1_live(true);
                        tracing::info!("invalidation channel subscribed");
                        subscription = Some(pubsub);
                    }
                    Err(e) => tracing::warn!(error = %e, "invalidation channel still down"),
                }
            }
        }))
    }

    /// One message from the channel: applied if it carries our MAC.
    fn receive(&self, mac: &MacKey, msg: &redis::Msg) {
        let Ok(raw) = msg.get_payload::<String>() else { return };
        let Some(encoded) = mac.open(CHANNEL, &raw) else {
            forged("invalidation message");
            return;
        };
        if let Some(inv) = Invalidation::decode(encoded) {
            self.apply(&inv);
        }
    }

    fn set_l1_live(&self, live: bool) {
        self.l1_live.store(live, std::sync::atomic::Ordering::SeqCst);
    }

    /// Empties L1 (watermarks heard stay: they only ever refuse more).
    pub fn clear_l1(&self) {
        if let Some(l1) = &self.l1 {
            l1.invalidate_all();
        }
    }
}
