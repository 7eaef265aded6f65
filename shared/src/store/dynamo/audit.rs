//! `AuditStore` on DynamoDB: the audit trail.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;

use crate::domain::UserId;
use crate::keys;
use crate::model::AuditEvent;
use crate::store::{AuditPage, AuditStore, StoreError};

use super::codec::{audit_item, key, n};
use super::error::send_error;
use super::DynamoStore;

impl AuditStore for DynamoStore {
    async fn put_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        // Written already (a redelivered record) is not an error: nothing to do.
        self.put_new(audit_item(event)?).await.map(|_| ())
    }

    async fn mark_swept(&self, user: &UserId, event_id: ulid::Ulid, at_ms: i64) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::user_pk(user), keys::audit_sk(&event_id))))
            .update_expression("SET SweptAt = if_not_exists(SweptAt, :at)")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":at", n(at_ms))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(())
            }
            Err(e) => Err(send_error(e)),
        }
    }

    async fn query_audit(&self, user: &UserId, after: Option<ulid::Ulid>, limit: u32) -> Result<AuditPage, StoreError> {
        let (events, last) =
            self.newest_first(user, keys::AUDIT_PREFIX, after.map(|id| keys::audit_sk(&id)), limit).await?;
        Ok(AuditPage { events, last_evaluated: last.as_deref().and_then(keys::audit_id_from_sk) })
    }
}
