//! The SQS event source mapping, played locally: receive a batch of messages, hand them to the
//! function as Lambda's SQS event, and delete those the function did not report failed
//! (`ReportBatchItemFailures`). Failed messages, and all of a batch whose invocation failed, are
//! left alone: they come back when their visibility timeout ends, and SQS's redrive policy moves
//! one received too often to the dead-letter queue. The stream poller (`stream-poller
//! --queue-url`) and the integration tests both use it.

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use serde_json::{json, Value};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The retry queue's settings, as `template.yaml` deploys them (a template test compares them):
/// a message is invisible this long once received (six times `logout-retry`'s timeout, as AWS
/// advises for an event source mapping) ...
pub const VISIBILITY_TIMEOUT_SECS: i32 = 180;
/// ... received at most this often before SQS moves it to the dead-letter queue ...
pub const MAX_RECEIVE_COUNT: i32 = 5;
/// ... and kept this long (SQS's longest: 14 days; the retry horizon is at most 7).
pub const RETENTION_SECS: i32 = 1_209_600;

/// Creates the retry queue `name` and its dead-letter queue `<name>-dlq` (idempotent), the queue
/// invisible for `visibility_secs` once received and moved to the dead-letter queue after
/// `max_receives` receives. Returns both URLs.
pub async fn create_retry_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    visibility_secs: i32,
    max_receives: i32,
) -> Result<(String, String), BoxError> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let retention = RETENTION_SECS.to_string();
    let dlq = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .attributes(A::MessageRetentionPeriod, &retention)
        .send()
        .await?
        .queue_url
        .ok_or("no dead-letter queue URL")?;
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(A::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|mut a| a.remove(&A::QueueArn))
        .ok_or("no dead-letter queue ARN")?;
    let redrive = json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives.to_string() });
    let url = sqs
        .create_queue()
        .queue_name(name)
        .attributes(A::VisibilityTimeout, visibility_secs.to_string())
        .attributes(A::MessageRetentionPeriod, &retention)
        .attributes(A::RedrivePolicy, redrive.to_string())
        .send()
        .await?
        .queue_url
        .ok_or("no queue URL")?;
    Ok((url, dlq))
}

/// Up to `max` (1-10) messages, waiting up to `wait_secs` for the first, with the attributes
/// Lambda's event carries.
pub async fn receive(sqs: &aws_sdk_sqs::Client, url: &str, max: i32, wait_secs: i32) -> Result<Vec<Message>, BoxError> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(max.clamp(1, 10))
        .wait_time_seconds(wait_secs)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await?;
    Ok(out.messages.unwrap_or_default())
}

/// A queue URL's ARN as Lambda names the source (`arn:aws:sqs:<region>:<account>:<name>`).
pub fn queue_arn(url: &str, region: &str) -> String {
    let mut parts = url.trim_end_matches('/').rsplit('/');
    let name = parts.next().unwrap_or_default();
    let account = parts.next().unwrap_or("000000000000");
    format!("arn:aws:sqs:{region}:{account}:{name}")
}

/// The messages as Lambda's SQS event (`Records`, each with `messageId`, `receiptHandle`, `body`,
/// `attributes`, `md5OfBody`, `eventSource`, `eventSourceARN`, `awsRegion`).
pub fn lambda_event(messages: &[Message], arn: &str, region: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes()
                .map(|a| a.iter().map(|(k, v)| (k.as_str().to_owned(), Value::String(v.clone()))).collect())
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": region,
            })
        })
        .collect();
    json!({ "Records": records })
}

/// The message ids a function reported failed, or an error when the invocation failed: an answer
/// that is not a batch response fails the whole batch, as it does on Lambda.
pub fn failed_ids(response: &Value) -> Result<Vec<String>, BoxError> {
    if !response.is_object() || response.get("errorType").is_some() {
        return Err("the function failed".into());
    }
    match response.get("batchItemFailures") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(failures)) => failures
            .iter()
            .map(|f| {
                f["itemIdentifier"].as_str().map(str::to_owned).ok_or_else(|| "an itemIdentifier is missing".into())
            })
            .collect(),
        Some(_) => Err("batchItemFailures is not a list".into()),
    }
}

/// Deletes every message of the batch but the failed ones.
pub async fn delete_done(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    messages: &[Message],
    failed: &[String],
) -> Result<usize, BoxError> {
    let entries: Vec<DeleteMessageBatchRequestEntry> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| !m.message_id().is_some_and(|id| failed.iter().any(|f| f == id)))
        .filter_map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .set_receipt_handle(m.receipt_handle().map(str::to_owned))
                .build()
                .ok()
        })
        .collect();
    if entries.is_empty() {
        return Ok(0);
    }
    let n = entries.len();
    let out = sqs.delete_message_batch().queue_url(url).set_entries(Some(entries)).send().await?;
    if !out.failed().is_empty() {
        return Err(format!("{} of {n} deletes failed", out.failed().len()).into());
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_batch_response_is_a_success() {
        assert_eq!(failed_ids(&json!({"batchItemFailures": []})).unwrap(), Vec::<String>::new());
        assert_eq!(failed_ids(&json!({})).unwrap(), Vec::<String>::new());
        assert_eq!(
            failed_ids(&json!({"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "b"}]})).unwrap(),
            ["a", "b"]
        );
        assert!(failed_ids(&json!({"errorType": "Panic", "errorMessage": "boom"})).is_err());
        assert!(failed_ids(&json!("not an object")).is_err());
        assert!(failed_ids(&json!({"batchItemFailures": [{}]})).is_err());
    }

    #[test]
    fn the_event_is_what_lambda_sends() {
        let m = Message::builder().message_id("m1").receipt_handle("h1").body("{}").md5_of_body("x").build();
        let arn = queue_arn("http://127.0.0.1:5000/123456789012/retries", "us-east-1");
        assert_eq!(arn, "arn:aws:sqs:us-east-1:123456789012:retries");
        let event = lambda_event(&[m], &arn, "us-east-1");
        let parsed: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_value(event).unwrap();
        assert_eq!(parsed.records[0].message_id.as_deref(), Some("m1"));
        assert_eq!(parsed.records[0].event_source_arn.as_deref(), Some(arn.as_str()));
    }
}
