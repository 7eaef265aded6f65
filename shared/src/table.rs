//! The table's definition, in one place: the local stack and every integration test create it
//! from here, and the deploy template must match it (keys, TTL attribute, stream view).

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, StreamSpecification,
    StreamViewType, TableStatus, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;

use crate::keys;

pub const STREAM_VIEW: StreamViewType = StreamViewType::NewAndOldImages;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Creates the table (on-demand, `PK`/`SK` strings, stream with new and old images), waits until
/// it is active, then turns TTL on for `ExpiresAt`.
pub async fn create_table(client: &Client, name: &str) -> Result<(), BoxError> {
    let attr =
        |n: &str| AttributeDefinition::builder().attribute_name(n).attribute_type(ScalarAttributeType::S).build();
    let key = |n: &str, t: KeyType| KeySchemaElement::builder().attribute_name(n).key_type(t).build();
    client
        .create_table()
        .table_name(name)
        .attribute_definitions(attr(keys::PK)?)
        .attribute_definitions(attr(keys::SK)?)
        .key_schema(key(keys::PK, KeyType::Hash)?)
        .key_schema(key(keys::SK, KeyType::Range)?)
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(
            StreamSpecification::builder().stream_enabled(true).stream_view_type(STREAM_VIEW).build()?,
        )
        .send()
        .await?;
    for _ in 0..100 {
        let out = client.describe_table().table_name(name).send().await?;
        if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder().enabled(true).attribute_name(keys::EXPIRES_AT).build()?,
        )
        .send()
        .await?;
    Ok(())
}

/// Whether the table exists already.
pub async fn table_exists(client: &Client, name: &str) -> Result<bool, BoxError> {
    match client.describe_table().table_name(name).send().await {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
