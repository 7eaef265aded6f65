//! A fresh table on DynamoDB Local per test, raw item access, and the table's stream.

use crate::Item;
use std::collections::HashMap;

use active_sessions::{table, DynamoStore};
use aws_sdk_dynamodb::types::AttributeValue;

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

/// A store on `table` at a DynamoDB of the test's choosing (its own server, or a closed port).
pub async fn store_at(port: u16, table: &str, timeouts: &active_sessions::config::StoreTimeouts) -> DynamoStore {
    let url = format!("http://127.0.0.1:{port}");
    let sdk = timeouts.sdk_loader().endpoint_url(&url).load().await;
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk).endpoint_url(url).build();
    DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(config), table)
}
