//! `ReceiptsStore` on DynamoDB: tombstones and their receipts.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;

use crate::domain::{SessionId, UserId};
use crate::keys;
use crate::model::{Session, SessionStatus};
use crate::store::{ReceiptsStore, StoreError};

use super::codec::{attr, from_item, n, s, session_item, session_key};
use super::error::send_error;
use super::{DynamoStore, RECEIPTS};

impl ReceiptsStore for DynamoStore {
    async fn tombstones(&self, user: &UserId) -> Result<Vec<crate::store::Tombstone>, StoreError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct TombstoneItem {
            #[serde(rename = "SK")]
            sk: String,
            #[serde(default)]
            revoked_at: Option<i64>,
            #[serde(default)]
            caches_invalidated_at: Option<i64>,
            #[serde(default)]
            receipts: std::collections::BTreeMap<String, crate::model::ProductReceipt>,
        }
        let projection = format!("SK, RevokedAt, CachesInvalidatedAt, {RECEIPTS}");
        let mut out = Vec::new();
        for item in self.session_items(user, &projection, true).await? {
            let t: TombstoneItem = from_item(item)?;
            if let Some(session_id) = keys::session_id_from_sk(&t.sk) {
                out.push(crate::store::Tombstone {
                    session_id,
                    revoked_at: t.revoked_at.unwrap_or(0),
                    caches_invalidated_at: t.caches_invalidated_at,
                    receipts: t.receipts,
                });
            }
        }
        Ok(out)
    }

    async fn receipts(
        &self,
        user: &UserId,
        session: SessionId,
    ) -> Result<std::collections::BTreeMap<String, crate::model::ProductReceipt>, StoreError> {
        // A Query on the one key (not GetItem): the fan-out's role reads with Query only.
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND SK = :sk")
            .expression_attribute_values(":pk", s(keys::user_pk(user)))
            .expression_attribute_values(":sk", s(keys::session_sk(&session)))
            .projection_expression(RECEIPTS)
            .consistent_read(true)
            .send()
            .await
            .map_err(send_error)?;
        let Some(mut item) = out.items.and_then(|items| items.into_iter().next()) else {
            return Ok(Default::default());
        };
        match item.remove(RECEIPTS) {
            Some(v) => serde_dynamo::from_attribute_value(v).map_err(StoreError::Corrupt),
            None => Ok(Default::default()),
        }
    }

    async fn advance_receipt(
        &self,
        user: &UserId,
        session: SessionId,
        aud: &str,
        from: &crate::model::ReceiptStep,
        receipt: &crate::model::ProductReceipt,
    ) -> Result<bool, StoreError> {
        let mut step = String::from("(#receipts.#aud.#status = :pending AND #receipts.#aud.Attempts = :attempts AND ");
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(session_key(user, session)))
            .update_expression("SET #receipts.#aud = :receipt")
            .expression_attribute_names("#status", "Status")
            .expression_attribute_names("#receipts", RECEIPTS)
            .expression_attribute_names("#aud", aud)
            .expression_attribute_values(":revoked", attr(SessionStatus::Revoked)?)
            .expression_attribute_values(":pending", attr(crate::model::DeliveryStatus::Pending)?)
            .expression_attribute_values(":attempts", n(i64::from(from.attempts)))
            .expression_attribute_values(":receipt", attr(receipt)?);
        match &from.link {
            Some(link) => {
                step.push_str("#receipts.#aud.Link = :link)");
                request = request.expression_attribute_values(":link", s(link.as_str()));
            }
            None => step.push_str("attribute_not_exists(#receipts.#aud.Link))"),
        }
        // A product the tombstone has no receipt for (added to the configuration since) is at the
        // first step too.
        if *from == crate::model::ReceiptStep::first() {
            step = format!("({step} OR attribute_not_exists(#receipts.#aud))");
        }
        let condition =
            format!("attribute_exists(PK) AND #status = :revoked AND attribute_exists(#receipts) AND {step}");
        match request.condition_expression(condition).send().await {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(false)
            }
            Err(e) => Err(send_error(e)),
        }
    }

    async fn record_caches_invalidated(
        &self,
        user: &UserId,
        session: SessionId,
        at_ms: i64,
        by: crate::model::CachesToldBy,
        products: &[String],
        keep_until_secs: i64,
    ) -> Result<(), StoreError> {
        // One write in the usual case, where the tombstone outlives the retries anyway; a second
        // that also extends its life when it would not.
        for extend in [false, true] {
            let mut set = vec![
                "CachesInvalidatedAt = if_not_exists(CachesInvalidatedAt, :at)",
                "CachesInvalidatedBy = if_not_exists(CachesInvalidatedBy, :by)",
            ];
            let mut condition = String::from("attribute_exists(PK) AND #status = :revoked");
            let mut request = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(session_key(user, session)))
                .expression_attribute_names("#status", "Status")
                .expression_attribute_names("#expires", keys::EXPIRES_AT)
                .expression_attribute_values(":at", n(at_ms))
                .expression_attribute_values(":by", attr(by)?)
                .expression_attribute_values(":keep", n(keep_until_secs))
                .expression_attribute_values(":revoked", attr(SessionStatus::Revoked)?);
            if extend {
                set.push("#expires = :keep");
                condition.push_str(" AND #expires < :keep");
            } else {
                condition.push_str(" AND #expires >= :keep");
            }
            if !products.is_empty() {
                let pending: std::collections::BTreeMap<&String, crate::model::ProductReceipt> =
                    products.iter().map(|p| (p, crate::model::ProductReceipt::not_tried())).collect();
                set.push("#receipts = if_not_exists(#receipts, :pending)");
                request = request
                    .expression_attribute_names("#receipts", RECEIPTS)
                    .expression_attribute_values(":pending", attr(pending)?);
            }
            let result = request
                .update_expression(format!("SET {}", set.join(", ")))
                .condition_expression(condition)
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(SdkError::ServiceError(e))
                    if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) => {}
                Err(e) => return Err(send_error(e)),
            }
        }
        // Neither applied: not a tombstone (gone, or not revoked), or its life changed between the
        // two writes, which only a later revocation write does: nothing to record.
        Ok(())
    }

    async fn create_tombstone(&self, tombstone: &Session) -> Result<bool, StoreError> {
        self.put_new(session_item(tombstone)?).await
    }
}
