//! The store's four traits over one DynamoDB table. Keys come from `crate::keys`; items ↔ structs
//! go through `serde_dynamo`.
//!
//! - One file per trait: `sessions` (`SessionsStore`), `receipts` (`ReceiptsStore`), `directory`
//!   (`DirectoryStore`), `audit` (`AuditStore`).
//! - Beside them: `codec`, items and attribute values; `expr`, update and condition expressions;
//!   `error`, SDK and transaction errors; `batch`, BatchGetItem with its retry. This module: the
//!   store, its SDK client and the calls the operations share.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, CancellationReason, ReturnValue, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use serde::Deserialize;

use crate::config::StoreTimeouts;
use crate::domain::{SessionId, UserId};
use crate::keys;
use crate::model::SessionStatus;
use crate::store::StoreError;

mod audit;
mod batch;
mod codec;
mod directory;
mod error;
mod expr;
mod receipts;
mod sessions;

use codec::{attr, from_item, key, n, s, session_key, sk_of};
use error::{sdk_error, send_error};
use expr::ACTIVE_UNEXPIRED;

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) const TYPE_SESSION: &str = "SESSION";
/// A tombstone's receipts: product (`aud`) → its back-channel logout's receipt.
pub(super) const RECEIPTS: &str = "Receipts";
pub(super) const TYPE_PROFILE: &str = "PROFILE";
pub(super) const TYPE_AUDIT: &str = "AUDIT";
pub(super) const TYPE_MEMBERSHIP: &str = "MEMBERSHIP";
/// A name held by one owner: an (issuer, audience) pair, a user identifier, a signal's `jti`.
pub(super) const TYPE_CLAIM: &str = "CLAIM";
pub(super) const TYPE_IDP: &str = "IDP";
/// BatchGetItem may leave keys unprocessed under load; retry this many times before giving up.
pub(super) const UNPROCESSED_RETRIES: u32 = 3;

#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// A store on `table` with the SDK configured from the environment, every call bounded by
    /// `timeouts` (connect, each attempt, the whole call with its retries). `AWS_ENDPOINT_URL_DYNAMODB`
    /// points it at DynamoDB Local; there is no other local switch.
    pub async fn from_env(table: impl Into<String>, timeouts: &StoreTimeouts) -> Self {
        let config = timeouts.sdk_loader().load().await;
        Self::new(Client::new(&config), table)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl DynamoStore {
    /// One strongly consistent Query of the user's items under `prefix`, newest first, after the
    /// sort key `after_sk`: the items and the last sort key read when more may follow.
    async fn newest_first<T: for<'de> Deserialize<'de>>(
        &self,
        user: &UserId,
        prefix: &str,
        after_sk: Option<String>,
        limit: u32,
    ) -> Result<(Vec<T>, Option<String>), StoreError> {
        let pk = keys::user_pk(user);
        let start = after_sk.map(|sk| key(pk.clone(), sk));
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":prefix", s(prefix))
            .scan_index_forward(false)
            .consistent_read(true)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(send_error)?;
        let items = out.items.unwrap_or_default().into_iter().map(from_item).collect::<Result<_, _>>()?;
        let last = out.last_evaluated_key.as_ref().and_then(sk_of).map(str::to_owned);
        Ok((items, last))
    }

    /// Puts an item that must not exist yet; `Ok(false)` when it did (nothing is written).
    async fn put_new(&self, item: Item) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) => {
                Ok(false)
            }
            Err(e) => Err(send_error(e)),
        }
    }

    /// Every session item of `user` (one Query, paginated inside, strongly consistent), with
    /// `projection`; `only_revoked` keeps the tombstones. `#status` names `Status`: the
    /// projection or the filter uses it.
    async fn session_items(
        &self,
        user: &UserId,
        projection: &str,
        only_revoked: bool,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
                .expression_attribute_names("#status", "Status")
                .expression_attribute_values(":pk", s(keys::user_pk(user)))
                .expression_attribute_values(":prefix", s(keys::SESSION_PREFIX))
                .projection_expression(projection)
                .consistent_read(true)
                .set_exclusive_start_key(start);
            if only_revoked {
                query = query
                    .filter_expression("#status = :revoked")
                    .expression_attribute_values(":revoked", attr(SessionStatus::Revoked)?);
            }
            let page = query.send().await.map_err(send_error)?;
            items.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(k) => start = Some(k),
                None => return Ok(items),
            }
        }
    }

    /// Updates a session only while it is active and unexpired (`ACTIVE_UNEXPIRED`) and `extra_condition`
    /// holds. Returns the item as it now is, or `None` when a condition failed (nothing written).
    async fn update_active_session(
        &self,
        user: &UserId,
        session: SessionId,
        now_ms: i64,
        update: &str,
        extra_condition: Option<&str>,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<Option<Item>, StoreError> {
        let condition = match extra_condition {
            Some(extra) => format!("{ACTIVE_UNEXPIRED} AND {extra}"),
            None => ACTIVE_UNEXPIRED.to_owned(),
        };
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(session_key(user, session)))
            .update_expression(update)
            .condition_expression(condition)
            .expression_attribute_names("#status", "Status")
            .expression_attribute_values(":active", attr(SessionStatus::Active)?)
            .expression_attribute_values(":now", n(now_ms.div_euclid(1000)))
            .return_values(ReturnValue::AllNew);
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        match request.send().await {
            Ok(out) => Ok(out.attributes),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(None)
            }
            Err(e) => Err(send_error(e)),
        }
    }

    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<Result<(), Vec<CancellationReason>>, StoreError> {
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(Ok(())),
            Err(SdkError::ServiceError(e)) => match e.into_err() {
                TransactWriteItemsError::TransactionCanceledException(c) => {
                    Ok(Err(c.cancellation_reasons.unwrap_or_default()))
                }
                other => Err(sdk_error(other)),
            },
            Err(e) => Err(send_error(e)),
        }
    }
}
