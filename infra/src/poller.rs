//! `stream-poller`: plays the part of Lambda's DynamoDB event source mapping on the local stack.
//!
//! It reads every shard of the table's stream about every 250 ms while idle (at once again after
//! a read that returned records, as Lambda's mapping does), sends each batch as a
//! real-shaped Lambda DynamoDB event to `revocation-fanout` through `cargo lambda watch`, honours
//! `batchItemFailures` by re-delivering from the first failed sequence number (bounded retries,
//! then the batch is logged and skipped, as an on-failure destination would take it), and follows
//! shards as they open and close: a child shard is read only once its parent is read to its end.
//! A failed read resumes after the last record delivered, never from the shard's start (which
//! would send every logout again). A function answer that is not the JSON of a batch response is
//! a failed invocation. DynamoDB Local marks TTL deletes with an unknown event name and
//! no `userIdentity`; they are normalised here to the AWS shape (`REMOVE` by
//! `Service`/`dynamodb.amazonaws.com`), so the consumer never learns a local dialect. Like the
//! deployed mapping, it applies the filter criteria of `template.yaml`: records no filter matches
//! are skipped, never sent.
//!
//! With `--queue-url`, it also plays the SQS event source mapping of `logout-retry` on tasks of
//! their own, so a slow retry never holds the stream (`local_stack::sqs`): up to
//! `--queue-concurrency` (2) invocations at once (the mapping's maximum concurrency), each with up
//! to `--queue-batch-size` (10) messages, long-polling 1 s; what the function reports failed, or
//! all of a batch whose invocation failed, is left for the queue's visibility timeout and redrive
//! policy; the rest is deleted.
//!
//! Usage: stream-poller --table NAME --invoke-url URL [--template template.yaml] [--interval-ms 250]
//! [--batch-size 100] [--queue-url URL --queue-invoke-url URL [--queue-batch-size 10]
//! [--queue-concurrency 2]]

use std::collections::{HashMap, HashSet};
use std::error::Error;
use std::time::Duration;

use aws_sdk_dynamodbstreams::error::DisplayErrorContext;
use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use aws_sdk_dynamodbstreams::Client as Streams;
use local_stack::filter::{self, Pattern};
use local_stack::stream::lambda_record;
use serde_json::{json, Value};

type BoxError = Box<dyn Error + Send + Sync>;

const MAX_ATTEMPTS: u32 = 5;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

/// The sequence number of a Lambda-shaped record (what `batchItemFailures` names).
fn sequence_of(record: &Value) -> Option<&str> {
    record["dynamodb"]["SequenceNumber"].as_str()
}

struct Poller {
    streams: Streams,
    http: reqwest::Client,
    invoke_url: String,
    arn: String,
    region: String,
    batch_size: i32,
    /// The mapping's filter criteria (from the template).
    filters: Vec<Pattern>,
    /// Open iterators, by shard.
    iterators: HashMap<String, String>,
    /// The last sequence number handed on (delivered, or given up on), by shard: where a failed
    /// read resumes.
    positions: HashMap<String, String>,
    /// Shards read to their end.
    finished: HashSet<String>,
}

/// Whether a shard may be read: its parent (if the stream still lists it) is read to its end.
fn ready(parent: Option<&str>, listed: &HashSet<String>, finished: &HashSet<String>) -> bool {
    parent.is_none_or(|p| !listed.contains(p) || finished.contains(p))
}

/// Where to (re)start reading a shard: after the last record handed on, or from its start.
fn start_at(position: Option<&String>) -> (ShardIteratorType, Option<String>) {
    match position {
        Some(seq) => (ShardIteratorType::AfterSequenceNumber, Some(seq.clone())),
        None => (ShardIteratorType::TrimHorizon, None),
    }
}

/// The first failed sequence number in the function's answer, or an error when the invocation
/// failed: a non-2xx status, a Lambda error document, or a body that is not a batch response.
fn first_failed(status: u16, body: &[u8]) -> Result<Option<String>, BoxError> {
    if !(200..300).contains(&status) {
        return Err(format!("function failed: {status}").into());
    }
    let body: Value = serde_json::from_slice(body).map_err(|_| format!("function answered {status} with no JSON"))?;
    if body.get("errorType").is_some() || !body.is_object() {
        return Err(format!("function failed: {status} {}", body.get("errorType").unwrap_or(&Value::Null)).into());
    }
    let failures = match body.get("batchItemFailures") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(f)) => f,
        Some(_) => return Err("batchItemFailures is not a list".into()),
    };
    Ok(failures
        .iter()
        .filter_map(|x| x["itemIdentifier"].as_str())
        .min_by_key(|s| s.parse::<u128>().unwrap_or(u128::MAX))
        .map(str::to_owned))
}

impl Poller {
    /// Picks up new shards: a child once its parent is read to its end, from its top; a shard
    /// whose read failed, after its last record handed on.
    async fn refresh_shards(&mut self) -> Result<(), BoxError> {
        let desc = self.streams.describe_stream().stream_arn(&self.arn).send().await?;
        let shards = desc.stream_description.and_then(|d| d.shards).unwrap_or_default();
        let listed: HashSet<String> = shards.iter().filter_map(|s| s.shard_id.clone()).collect();
        for shard in shards {
            let Some(id) = shard.shard_id else { continue };
            if self.iterators.contains_key(&id) || self.finished.contains(&id) {
                continue;
            }
            if !ready(shard.parent_shard_id.as_deref(), &listed, &self.finished) {
                continue;
            }
            let (kind, after) = start_at(self.positions.get(&id));
            let it = self
                .streams
                .get_shard_iterator()
                .stream_arn(&self.arn)
                .shard_id(&id)
                .shard_iterator_type(kind)
                .set_sequence_number(after)
                .send()
                .await?
                .shard_iterator;
            match it {
                Some(it) => {
                    self.iterators.insert(id, it);
                }
                None => {
                    self.finished.insert(id);
                }
            }
        }
        Ok(())
    }

    /// Sends one batch of Lambda-shaped records; returns the first failed sequence number, if any.
    async fn invoke(&self, records: &[Value]) -> Result<Option<String>, BoxError> {
        let event = json!({ "Records": records });
        let res = self.http.post(&self.invoke_url).json(&event).send().await?;
        let status = res.status().as_u16();
        let body = res.bytes().await?;
        first_failed(status, &body)
    }

    /// Reads one batch from a shard and delivers it, re-delivering from the first failure. `true`
    /// when the read returned records (the next read follows at once, as the event source
    /// mapping's does; an idle shard is read again after the interval).
    async fn poll_shard(&mut self, shard: &str) -> Result<bool, BoxError> {
        let Some(it) = self.iterators.get(shard).cloned() else { return Ok(false) };
        let out = self
            .streams
            .get_records()
            .shard_iterator(it)
            .limit(self.batch_size)
            .send()
            .await
            .map_err(|e| format!("GetRecords: {}", DisplayErrorContext(&e)))?;
        // Each record in the Lambda shape once: the filter and every delivery attempt use it.
        let records = out.records.unwrap_or_default();
        // The last record read, filtered out or not: where a failed read resumes.
        let last = records.last().and_then(|r| r.dynamodb.as_ref()).and_then(|d| d.sequence_number.clone());
        let mut batch: Vec<Value> = records
            .iter()
            .map(|r| lambda_record(r, &self.arn, &self.region))
            .filter(|r| filter::passes(&self.filters, r))
            .collect();
        let next = out.next_shard_iterator;
        if !batch.is_empty() {
            for attempt in 1..=MAX_ATTEMPTS {
                match self.invoke(&batch).await {
                    Ok(None) => break,
                    outcome => {
                        // Re-deliver from the first failed record (the whole batch if the call failed).
                        let from = match &outcome {
                            Ok(Some(seq)) => seq.clone(),
                            _ => sequence_of(&batch[0]).unwrap_or_default().to_owned(),
                        };
                        if attempt == MAX_ATTEMPTS {
                            eprintln!("stream-poller: giving up on shard {shard} from {from} after {attempt} attempts: {outcome:?}");
                            break;
                        }
                        eprintln!(
                            "stream-poller: re-delivering shard {shard} from {from} (attempt {attempt}): {outcome:?}"
                        );
                        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                        let keep = batch.iter().position(|r| sequence_of(r) == Some(from.as_str())).unwrap_or(0);
                        batch.drain(..keep);
                    }
                }
            }
        }
        let busy = last.is_some();
        if let Some(last) = last {
            self.positions.insert(shard.to_owned(), last);
        }
        match next {
            Some(n) => {
                self.iterators.insert(shard.to_owned(), n);
            }
            None => {
                self.iterators.remove(shard);
                self.finished.insert(shard.to_owned());
            }
        }
        Ok(busy)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let table = arg(&args, "--table").ok_or("--table NAME is required")?;
    let invoke_url = arg(&args, "--invoke-url").ok_or("--invoke-url URL is required")?;
    let interval = Duration::from_millis(arg(&args, "--interval-ms").and_then(|v| v.parse().ok()).unwrap_or(250));
    let batch_size = arg(&args, "--batch-size").and_then(|v| v.parse().ok()).unwrap_or(100);
    let template = arg(&args, "--template").unwrap_or_else(|| "template.yaml".into());
    let filters = filter::from_template(
        &std::fs::read_to_string(&template).map_err(|e| format!("reading the template {template}: {e}"))?,
    )?;

    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let region = config.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into());
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let table_desc = dynamodb.describe_table().table_name(&table).send().await?;
    let arn = table_desc.table.and_then(|t| t.latest_stream_arn).ok_or("the table has no stream")?;
    active_sessions::config::install_crypto_provider();
    let mut poller = Poller {
        streams: Streams::new(&config),
        // Bounded like every call: the function's own timeout is 60 s deployed.
        http: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(90))
            .build()?,
        invoke_url,
        arn,
        region,
        batch_size,
        filters,
        iterators: HashMap::new(),
        positions: HashMap::new(),
        finished: HashSet::new(),
    };
    eprintln!(
        "stream-poller: reading {} every {:?} through {} filter(s) from {template}",
        poller.arn,
        interval,
        poller.filters.len()
    );
    if let Some(queue_url) = arg(&args, "--queue-url") {
        let invoke_url = arg(&args, "--queue-invoke-url").ok_or("--queue-invoke-url URL goes with --queue-url")?;
        let batch = arg(&args, "--queue-batch-size").and_then(|v| v.parse().ok()).unwrap_or(10);
        let concurrency: usize = arg(&args, "--queue-concurrency").and_then(|v| v.parse().ok()).unwrap_or(2);
        let sqs = aws_sdk_sqs::Client::new(&config);
        let arn = local_stack::sqs::queue_arn(&queue_url, &poller.region);
        eprintln!("stream-poller: {queue_url} into {invoke_url}, {concurrency} at a time, batches of {batch}");
        for _ in 0..concurrency.max(1) {
            let mapping = QueueMapping {
                sqs: sqs.clone(),
                http: poller.http.clone(),
                queue_url: queue_url.clone(),
                invoke_url: invoke_url.clone(),
                arn: arn.clone(),
                region: poller.region.clone(),
                batch,
            };
            tokio::spawn(mapping.run());
        }
    }
    let mut ticks = 0u64;
    let mut refresh_now = false;
    loop {
        if std::mem::take(&mut refresh_now) || ticks.is_multiple_of(20) || poller.iterators.is_empty() {
            if let Err(e) = poller.refresh_shards().await {
                eprintln!("stream-poller: describing the stream failed: {e}");
            }
        }
        let shards: Vec<String> = poller.iterators.keys().cloned().collect();
        let mut busy = false;
        for shard in shards {
            match poller.poll_shard(&shard).await {
                Ok(read) => busy |= read,
                Err(e) => {
                    eprintln!("stream-poller: shard {shard}: {e}");
                    // An expired or bad iterator: forget it; the next refresh resumes the shard
                    // after its last record handed on.
                    poller.iterators.remove(&shard);
                    refresh_now = true;
                }
            }
        }
        ticks += 1;
        if !busy {
            tokio::time::sleep(interval).await;
        }
    }
}

/// One of the SQS event source mapping's pollers: receive, invoke, delete what succeeded.
struct QueueMapping {
    sqs: aws_sdk_sqs::Client,
    http: reqwest::Client,
    queue_url: String,
    invoke_url: String,
    arn: String,
    region: String,
    batch: i32,
}

impl QueueMapping {
    async fn run(self) {
        loop {
            if let Err(e) = self.once().await {
                eprintln!("stream-poller: the retry queue: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    async fn once(&self) -> Result<(), BoxError> {
        use local_stack::sqs;
        let messages = sqs::receive(&self.sqs, &self.queue_url, self.batch, 1).await?;
        if messages.is_empty() {
            return Ok(());
        }
        let event = sqs::lambda_event(&messages, &self.arn, &self.region);
        let res = self.http.post(&self.invoke_url).json(&event).send().await?;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(
                format!("logout-retry answered {status}; the batch comes back after its visibility timeout").into()
            );
        }
        let failed = sqs::failed_ids(&body)?;
        sqs::delete_done(&self.sqs, &self.queue_url, &messages, &failed).await?;
        if !failed.is_empty() {
            eprintln!("stream-poller: logout-retry reported {} of {} failed", failed.len(), messages.len());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_child_waits_for_its_parent_to_close() {
        let listed = set(&["parent", "child"]);
        assert!(!ready(Some("parent"), &listed, &set(&[])), "the parent is still open");
        assert!(ready(Some("parent"), &listed, &set(&["parent"])));
        assert!(ready(Some("gone"), &listed, &set(&[])), "a parent trimmed from the stream waits for nothing");
        assert!(ready(None, &listed, &set(&[])));
    }

    #[test]
    fn a_failed_read_resumes_after_the_last_record_handed_on() {
        assert_eq!(start_at(None), (ShardIteratorType::TrimHorizon, None));
        let (kind, after) = start_at(Some(&"000000000000000000042".to_owned()));
        assert_eq!((kind, after.as_deref()), (ShardIteratorType::AfterSequenceNumber, Some("000000000000000000042")));
    }

    #[test]
    fn only_a_batch_response_is_a_success() {
        assert_eq!(first_failed(200, br#"{"batchItemFailures": []}"#).unwrap(), None);
        assert_eq!(first_failed(200, br#"{}"#).unwrap(), None);
        let two = br#"{"batchItemFailures": [{"itemIdentifier": "20"}, {"itemIdentifier": "3"}]}"#;
        assert_eq!(first_failed(200, two).unwrap().as_deref(), Some("3"), "the first by sequence, not by position");
        assert!(first_failed(200, b"<html>gateway timeout</html>").is_err(), "a 200 that is not JSON failed");
        assert!(first_failed(200, b"").is_err());
        assert!(first_failed(200, br#"{"errorType": "Panic", "errorMessage": "boom"}"#).is_err());
        assert!(first_failed(502, br#"{"batchItemFailures": []}"#).is_err());
    }
}
