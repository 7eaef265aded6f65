//! `RetryLedger` for `DynamoStore`: entries in the `LOGOUT_RETRY` partition, sorted by due time.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use serde::{Deserialize, Serialize};

use crate::domain::{SessionId, UserId};
use crate::keys;
use crate::store::{RetryEntry, RetryLedger, StoreError};

use super::codec::*;
use super::error::*;
use super::*;

/// An entry outlives its horizon by a day at most: TTL clears what no drain settled.
const LINGER_SECS: i64 = 86_400;
const TYPE_RETRY: &str = "LOGOUT_RETRY";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RetryItem {
    user_id: UserId,
    session_id: SessionId,
    aud: String,
    due_at: i64,
    give_up_at: i64,
}

fn entry_key(entry: &RetryEntry) -> Item {
    key(keys::RETRY_PK.to_owned(), keys::retry_sk(entry.due_at, &entry.session, &entry.aud))
}

fn entry_item(entry: &RetryEntry) -> Result<Item, StoreError> {
    let mut item: Item = serde_dynamo::to_item(RetryItem {
        user_id: entry.user.clone(),
        session_id: entry.session,
        aud: entry.aud.clone(),
        due_at: entry.due_at,
        give_up_at: entry.give_up_at,
    })
    .map_err(StoreError::Corrupt)?;
    item.extend(entry_key(entry));
    item.insert("Type".into(), s(TYPE_RETRY));
    item.insert(keys::EXPIRES_AT.into(), n(entry.give_up_at / 1000 + LINGER_SECS));
    Ok(item)
}

impl RetryLedger for DynamoStore {
    async fn schedule_retry(&self, entry: &RetryEntry) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(entry_item(entry)?))
            .send()
            .await
            .map_err(send_error)?;
        Ok(())
    }

    async fn due_retries(&self, now_ms: i64, limit: u32) -> Result<Vec<RetryEntry>, StoreError> {
        // The lease filter applies after each page's limit: read a few pages for `limit` entries.
        const PAGES: usize = 4;
        let limit = limit.clamp(1, 1000) as usize;
        let mut items = Vec::new();
        let mut start = None;
        for _ in 0..PAGES {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND SK <= :due")
                .filter_expression("attribute_not_exists(LeaseUntil) OR LeaseUntil < :now")
                .expression_attribute_values(":pk", s(keys::RETRY_PK))
                .expression_attribute_values(":due", s(keys::retry_due_bound(now_ms)))
                .expression_attribute_values(":now", n(now_ms))
                .consistent_read(true)
                .limit(i32::try_from(limit).unwrap_or(1000))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(send_error)?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if items.len() >= limit || start.is_none() {
                break;
            }
        }
        items.truncate(limit);
        items
            .into_iter()
            .map(|item| {
                let r: RetryItem = from_item(item)?;
                Ok(RetryEntry {
                    user: r.user_id,
                    session: r.session_id,
                    aud: r.aud,
                    due_at: r.due_at,
                    give_up_at: r.give_up_at,
                })
            })
            .collect()
    }

    async fn claim_retry(&self, entry: &RetryEntry, now_ms: i64, lease_until: i64) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(entry_key(entry)))
            .update_expression("SET LeaseUntil = :until")
            .condition_expression("attribute_exists(PK) AND (attribute_not_exists(LeaseUntil) OR LeaseUntil < :now)")
            .expression_attribute_values(":until", n(lease_until))
            .expression_attribute_values(":now", n(now_ms))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(false)
            }
            Err(e) => Err(send_error(e)),
        }
    }

    async fn settle_retry(
        &self,
        entry: &RetryEntry,
        lease_until: i64,
        next: Option<&RetryEntry>,
    ) -> Result<(), StoreError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(entry_key(entry)))
            .condition_expression("LeaseUntil = :mine")
            .expression_attribute_values(":mine", AttributeValue::N(lease_until.to_string()))
            .build()
            .map_err(build_error)?;
        let mut writes = vec![TransactWriteItem::builder().delete(delete).build()];
        if let Some(next) = next {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(entry_item(next)?))
                .build()
                .map_err(build_error)?;
            writes.push(TransactWriteItem::builder().put(put).build());
        }
        match self.transact(writes).await? {
            Ok(()) => Ok(()),
            // Another drain's lease replaced ours (ours ran out): that drain settles the entry.
            Err(reasons) if failed_condition(&reasons, 0).is_some() => Ok(()),
            Err(_) => Err(StoreError::Conflict),
        }
    }
}
