//! Stand-ins for products (a back-channel logout receiver), the retry queue, and deliveries.

use crate::table::required_env;

/// A stand-in product's back-channel logout endpoint, in the test's own process: it answers each
/// POST after `delay` with 200, or with 500 while `fail_first` attempts per session are not used
/// up, and records every logout token it receives (with when and what it answered).
pub struct StandInProduct {
    pub url: String,
    received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Clone)]
pub struct Received {
    pub at: std::time::Instant,
    pub sid: String,
    pub jti: String,
    pub status: u16,
    /// The logout token as received.
    pub token: String,
}

impl StandInProduct {
    pub async fn start(delay: std::time::Duration, fail_first: usize) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a stand-in product");
        let url = format!("http://{}/logout", listener.local_addr().unwrap());
        let received: std::sync::Arc<std::sync::Mutex<Vec<Received>>> = Default::default();
        let down: std::sync::Arc<std::sync::atomic::AtomicBool> = Default::default();
        let log = std::sync::Arc::clone(&received);
        let is_down = std::sync::Arc::clone(&down);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                let log = std::sync::Arc::clone(&log);
                let is_down = std::sync::Arc::clone(&is_down);
                tokio::spawn(async move {
                    // One request per connection (`Connection: close`): enough for a test.
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let body = loop {
                        let Ok(n) = stream.read(&mut chunk).await else { return };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let length = text[..end]
                                .lines()
                                .find_map(|l| {
                                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                                })
                                .and_then(|v| v.parse::<usize>().ok())
                                .unwrap_or(0);
                            if buf.len() >= end + 4 + length {
                                break text[end + 4..end + 4 + length].to_owned();
                            }
                        }
                    };
                    let token = body.strip_prefix("logout_token=").unwrap_or_default().to_owned();
                    let claims = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(&token)
                        .map(|d| d.claims)
                        .unwrap_or_default();
                    let sid = claims["sid"].as_str().unwrap_or_default().to_owned();
                    let jti = claims["jti"].as_str().unwrap_or_default().to_owned();
                    tokio::time::sleep(delay).await;
                    let status = {
                        let mut log = log.lock().unwrap();
                        let attempts = log.iter().filter(|r| r.sid == sid).count();
                        let failing = attempts < fail_first || is_down.load(std::sync::atomic::Ordering::SeqCst);
                        let status = if failing { 500 } else { 200 };
                        log.push(Received { at: std::time::Instant::now(), sid, jti, status, token });
                        status
                    };
                    let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    let _ = stream.write_all(reply.as_bytes()).await;
                });
            }
        });
        Self { url, received, down, task }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// While down, every delivery is answered 500.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for StandInProduct {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A back-channel configuration for the given products (`aud` → URL) with a throwaway key.
pub fn backchannel(products: &[(&str, &str)]) -> active_sessions::logout::Backchannel {
    let endpoints: Vec<serde_json::Value> =
        products.iter().map(|(aud, url)| serde_json::json!({"aud": aud, "url": url})).collect();
    let secret = serde_json::json!({
        "endpoints": endpoints,
        "issuer": "http://127.0.0.1",
        "signing_key_pem": TEST_SIGNING_KEY,
        "key_id": "test-1",
    });
    active_sessions::logout::Backchannel::from_secret_json(&secret.to_string()).expect("back-channel configuration")
}

/// A retry queue of the test's own on the local SQS (moto's server, `AWS_ENDPOINT_URL_SQS`), with
/// its dead-letter queue, and the event source mapping played by hand (`pump`).
pub struct TestQueue {
    pub sqs: aws_sdk_sqs::Client,
    pub url: String,
    pub dlq_url: String,
    pub queue: active_sessions::queue::SqsQueue,
}

impl TestQueue {
    /// A queue whose received messages come back after `visibility_secs`, moved to the
    /// dead-letter queue after `max_receives` receives.
    pub async fn new(visibility_secs: i32, max_receives: i32) -> Self {
        required_env("AWS_ENDPOINT_URL_SQS");
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let sqs = aws_sdk_sqs::Client::new(&config);
        let name = format!("retry-{}", active_sessions::domain::SessionId::new().to_string().to_lowercase());
        let (url, dlq_url) = local_stack::sqs::create_retry_queue(&sqs, &name, visibility_secs, max_receives)
            .await
            .unwrap_or_else(|e| panic!("creating queue {name} on the local SQS (moto) failed: {e:?}"));
        let queue = active_sessions::queue::SqsQueue::new(sqs.clone(), &url);
        Self { sqs, url, dlq_url, queue }
    }

    /// Plays the event source mapping once: up to 10 visible messages handed to `logout-retry` as
    /// its SQS event, those it did not report failed deleted. How many it received, and the tally.
    pub async fn pump<S, Q>(
        &self,
        courier: &active_sessions::service::Courier<'_, S, Q>,
    ) -> (usize, logout_retry::Tally)
    where
        S: active_sessions::SessionStore,
        Q: active_sessions::queue::RetryQueue,
    {
        use local_stack::sqs;
        let messages = sqs::receive(&self.sqs, &self.url, 10, 0).await.expect("receive");
        if messages.is_empty() {
            return (0, logout_retry::Tally::default());
        }
        let event = sqs::lambda_event(&messages, &sqs::queue_arn(&self.url, "us-east-1"), "us-east-1");
        let (response, tally) = logout_retry::handle(courier, serde_json::from_value(event).expect("SQS event")).await;
        let failed = sqs::failed_ids(&serde_json::to_value(response).expect("response")).expect("a batch response");
        sqs::delete_done(&self.sqs, &self.url, &messages, &failed).await.expect("delete");
        (messages.len(), tally)
    }

    /// Pumps until `done` holds or `within` passes (messages come due with their delays).
    pub async fn pump_until<S, Q>(
        &self,
        courier: &active_sessions::service::Courier<'_, S, Q>,
        within: std::time::Duration,
        mut done: impl FnMut(&logout_retry::Tally) -> bool,
    ) -> logout_retry::Tally
    where
        S: active_sessions::SessionStore,
        Q: active_sessions::queue::RetryQueue,
    {
        let deadline = std::time::Instant::now() + within;
        let mut total = logout_retry::Tally::default();
        while std::time::Instant::now() < deadline {
            let (n, t) = self.pump(courier).await;
            total.delivered += t.delivered;
            total.retrying += t.retrying;
            total.deferred += t.deferred;
            total.failed += t.failed;
            total.stale += t.stale;
            total.errors += t.errors;
            total.corrupt += t.corrupt;
            if done(&total) {
                break;
            }
            if n == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        total
    }

    /// The queue's messages: (visible, in flight, delayed).
    pub async fn depth(&self) -> (u64, u64, u64) {
        depth_of(&self.sqs, &self.url).await
    }

    /// The dead-letter queue's visible messages.
    pub async fn dead_letters(&self) -> u64 {
        depth_of(&self.sqs, &self.dlq_url).await.0
    }

    /// Every visible message's body, received and left to come back after the visibility timeout.
    pub async fn peek(&self) -> Vec<active_sessions::queue::RetryMessage> {
        let messages = local_stack::sqs::receive(&self.sqs, &self.url, 10, 0).await.expect("receive");
        messages
            .iter()
            .filter_map(|m| active_sessions::queue::RetryMessage::from_body(m.body().unwrap_or("")).ok())
            .collect()
    }
}

async fn depth_of(sqs: &aws_sdk_sqs::Client, url: &str) -> (u64, u64, u64) {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(A::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .unwrap_or_default();
    let n = |a: A| attrs.get(&a).and_then(|v| v.parse().ok()).unwrap_or(0);
    (
        n(A::ApproximateNumberOfMessages),
        n(A::ApproximateNumberOfMessagesNotVisible),
        n(A::ApproximateNumberOfMessagesDelayed),
    )
}

/// A throwaway P-256 key for tests and benchmarks only.
pub const TEST_SIGNING_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg8/bL2AVkj2NPrp4B
vO/IRYw+K8SPoKvhTQDpXa8lc0KhRANCAASZed04bTb0nTqiWJ8lybHCaDPaE1pN
2i8U+9A5GvoZ+9zMN4JEFKFVpi+TCo13GJhBKFQxkshFeHE3RgA+2+un
-----END PRIVATE KEY-----";

/// What the fan-out and `logout-retry` deliver with in a test: a queue of the test's own on the
/// local SQS, each product's gate and breaker, the retry policy, an in-process token cache (no
/// Redis unless given one) and the products.
pub struct Delivery {
    pub queue: TestQueue,
    pub guards: active_sessions::breaker::ProductGuards,
    pub retry: active_sessions::logout::RetryPolicy,
    pub policy: active_sessions::Policy,
    pub cache: active_sessions::cache::TokenCache,
    pub backchannel: active_sessions::logout::Backchannel,
}

impl Delivery {
    /// For `products` (`aud` → URL), retried under `retry`, messages visible again 1 s after a
    /// failed receive and dead-lettered after 3.
    pub async fn new(products: &[(&str, &str)], retry: active_sessions::logout::RetryPolicy) -> Self {
        Self::with(products, retry, active_sessions::breaker::BreakerConfig::default(), None).await
    }

    pub async fn with(
        products: &[(&str, &str)],
        retry: active_sessions::logout::RetryPolicy,
        breaker: active_sessions::breaker::BreakerConfig,
        cache: Option<active_sessions::cache::CacheConfig>,
    ) -> Self {
        let cache = active_sessions::cache::TokenCache::new(&cache.unwrap_or_default()).await.expect("a token cache");
        let backchannel =
            if products.is_empty() { active_sessions::logout::Backchannel::disabled() } else { backchannel(products) };
        Self {
            queue: TestQueue::new(1, 3).await,
            guards: active_sessions::breaker::ProductGuards::new(breaker),
            retry,
            policy: active_sessions::Policy::default(),
            cache,
            backchannel,
        }
    }

    pub fn fanout<'a, S>(
        &'a self,
        store: &'a S,
    ) -> revocation_fanout::handler::Fanout<'a, S, active_sessions::queue::SqsQueue> {
        revocation_fanout::handler::Fanout {
            store,
            policy: &self.policy,
            cache: &self.cache,
            backchannel: &self.backchannel,
            queue: &self.queue.queue,
            guards: &self.guards,
            retry: &self.retry,
        }
    }

    pub fn courier<'a, S>(
        &'a self,
        store: &'a S,
    ) -> active_sessions::service::Courier<'a, S, active_sessions::queue::SqsQueue> {
        active_sessions::service::Courier {
            store,
            queue: &self.queue.queue,
            backchannel: &self.backchannel,
            guards: &self.guards,
            policy: &self.retry,
        }
    }
}
