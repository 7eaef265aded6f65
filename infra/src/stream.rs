//! A DynamoDB Streams record as Lambda delivers it (the DynamoDB event's `Records[]` entry).

use std::collections::HashMap;

use aws_sdk_dynamodbstreams::types::{AttributeValue, OperationType, Record};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};

/// A streams SDK attribute value as DynamoDB JSON (`{"S": "..."}`), the shape Lambda delivers.
pub fn attr_json(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::B(b) => json!({ "B": STANDARD.encode(b.as_ref()) }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(_) => json!({ "NULL": true }),
        AttributeValue::Ss(v) => json!({ "SS": v }),
        AttributeValue::Ns(v) => json!({ "NS": v }),
        AttributeValue::Bs(v) => json!({ "BS": v.iter().map(|b| STANDARD.encode(b.as_ref())).collect::<Vec<_>>() }),
        AttributeValue::L(l) => json!({ "L": l.iter().map(attr_json).collect::<Vec<_>>() }),
        AttributeValue::M(m) => json!({ "M": item_json(m) }),
        _ => json!({ "NULL": true }),
    }
}

pub fn item_json(item: &HashMap<String, AttributeValue>) -> Value {
    Value::Object(item.iter().map(|(k, v)| (k.clone(), attr_json(v))).collect::<Map<_, _>>())
}

/// One stream record in the Lambda event shape, with DynamoDB Local's TTL records normalised:
/// DynamoDB Local marks TTL deletes with an unknown event name and no `userIdentity`; AWS sends
/// `REMOVE` by `Service`/`dynamodb.amazonaws.com`.
pub fn lambda_record(r: &Record, arn: &str, region: &str) -> Value {
    let data = r.dynamodb.as_ref();
    let old = data.and_then(|d| d.old_image.as_ref());
    let new = data.and_then(|d| d.new_image.as_ref());
    let (name, ttl) = match &r.event_name {
        Some(OperationType::Insert) => ("INSERT", false),
        Some(OperationType::Modify) => ("MODIFY", false),
        Some(OperationType::Remove) => ("REMOVE", r.user_identity.is_some()),
        // DynamoDB Local's TTL delete: an unknown event name, the old image, no new image.
        _ if old.is_some() && new.is_none() => ("REMOVE", true),
        _ => ("UNKNOWN", false),
    };
    let mut change = Map::new();
    if let Some(d) = data {
        let created = d.approximate_creation_date_time.map(|t| t.secs()).unwrap_or(0);
        change.insert("ApproximateCreationDateTime".into(), json!(created));
        change.insert("Keys".into(), d.keys.as_ref().map(item_json).unwrap_or_else(|| json!({})));
        if let Some(o) = old {
            change.insert("OldImage".into(), item_json(o));
        }
        if let Some(n) = new {
            change.insert("NewImage".into(), item_json(n));
        }
        change.insert("SequenceNumber".into(), json!(d.sequence_number));
        change.insert("SizeBytes".into(), json!(d.size_bytes.unwrap_or(0)));
        change.insert("StreamViewType".into(), json!("NEW_AND_OLD_IMAGES"));
    }
    let mut rec = json!({
        "eventID": r.event_id,
        "eventName": name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": change,
        "eventSourceARN": arn,
    });
    if ttl {
        rec["userIdentity"] = json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"});
    }
    rec
}
