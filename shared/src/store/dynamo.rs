//! `SessionStore` over one DynamoDB table. Keys come from `crate::keys`; items ↔ structs go
//! through `serde_dynamo`.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, ReturnValuesOnConditionCheckFailure,
};
use aws_sdk_dynamodb::Client;
use serde::Deserialize;

use super::{AuthRecord, RevokeOutcome, SessionPage, SessionState, SessionStore, StoreError};
use crate::domain::{SessionId, UserId};
use crate::keys;
use crate::model::{Profile, Revocation, Session, SessionStatus, Watermark};

type Item = HashMap<String, AttributeValue>;

const TYPE_SESSION: &str = "SESSION";
const TYPE_PROFILE: &str = "PROFILE";
/// BatchGetItem may leave keys unprocessed under load; retry this many times before giving up.
const UNPROCESSED_RETRIES: u32 = 3;
/// Concurrent revoke-alls race on the watermark; each loser moves past the winner.
const WATERMARK_RETRIES: u32 = 5;

#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// A store on `table` with the SDK configured from the environment. `AWS_ENDPOINT_URL_DYNAMODB`
    /// points it at DynamoDB Local; there is no other local switch.
    pub async fn from_env(table: impl Into<String>) -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self::new(Client::new(&config), table)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(pk: String, sk: String) -> Item {
    HashMap::from([(keys::PK.to_owned(), s(pk)), (keys::SK.to_owned(), s(sk))])
}

fn session_key(user: &UserId, session: SessionId) -> Item {
    key(keys::user_pk(user), keys::session_sk(&session))
}

fn profile_key(user: &UserId) -> Item {
    key(keys::user_pk(user), keys::PROFILE_SK.to_owned())
}

/// A session as a full item: its attributes plus `PK`, `SK` and `Type`.
pub(crate) fn session_item(session: &Session) -> Result<Item, StoreError> {
    let mut item: Item = serde_dynamo::to_item(session).map_err(StoreError::Corrupt)?;
    item.extend(session_key(&session.user_id, session.session_id));
    item.insert("Type".into(), s(TYPE_SESSION));
    Ok(item)
}

fn from_item<T: for<'de> Deserialize<'de>>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(StoreError::Corrupt)
}

/// An SDK error (or an operation's own error) as a `StoreError`, keeping it as the source.
fn sdk_error<E>(err: E) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let throttled = matches!(
        err.code(),
        Some(
            "ThrottlingException"
                | "ProvisionedThroughputExceededException"
                | "RequestLimitExceeded"
        )
    );
    if throttled {
        StoreError::Throttled(Box::new(err))
    } else {
        StoreError::Sdk(Box::new(err))
    }
}

fn sk_of(item: &Item) -> Option<&str> {
    item.get(keys::SK)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StateItem {
    #[serde(rename = "SK")]
    sk: String,
    signed_in_at: i64,
    expires_at: i64,
    status: SessionStatus,
}

impl SessionStore for DynamoStore {
    async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(session_item(session)?))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                Err(StoreError::AlreadyExists)
            }
            Err(e) => Err(sdk_error(e)),
        }
    }

    async fn load_auth(&self, user: &UserId, session: SessionId) -> Result<AuthRecord, StoreError> {
        let mut pending = KeysAndAttributes::builder()
            .keys(session_key(user, session))
            .keys(profile_key(user))
            .consistent_read(true)
            .build()
            .map_err(|e| StoreError::Sdk(Box::new(e)))?;
        let mut record = AuthRecord::default();
        for attempt in 0..=UNPROCESSED_RETRIES {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
            }
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, pending.clone())
                .send()
                .await
                .map_err(sdk_error)?;
            let items = out
                .responses
                .and_then(|mut r| r.remove(&self.table))
                .unwrap_or_default();
            for item in items {
                if sk_of(&item) == Some(keys::PROFILE_SK) {
                    record.watermark = from_item::<Profile>(item)?.watermark;
                } else {
                    record.session = Some(from_item(item)?);
                }
            }
            match out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) {
                Some(rest) if !rest.keys.is_empty() => pending = rest,
                _ => return Ok(record),
            }
        }
        Err(StoreError::Throttled(
            "BatchGetItem left keys unprocessed after retries".into(),
        ))
    }

    async fn query_sessions(
        &self,
        user: &UserId,
        after: Option<SessionId>,
        limit: u32,
    ) -> Result<SessionPage, StoreError> {
        let pk = keys::user_pk(user);
        let start = after.map(|id| key(pk.clone(), keys::session_sk(&id)));
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":prefix", s(keys::SESSION_PREFIX))
            .scan_index_forward(false)
            .consistent_read(true)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(sdk_error)?;
        let sessions = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(from_item)
            .collect::<Result<_, _>>()?;
        let last_evaluated = out
            .last_evaluated_key
            .as_ref()
            .and_then(sk_of)
            .and_then(keys::session_id_from_sk);
        Ok(SessionPage {
            sessions,
            last_evaluated,
        })
    }

    async fn session_states(&self, user: &UserId) -> Result<Vec<SessionState>, StoreError> {
        let mut states = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
                .expression_attribute_values(":pk", s(keys::user_pk(user)))
                .expression_attribute_values(":prefix", s(keys::SESSION_PREFIX))
                .projection_expression("SK, SignedInAt, ExpiresAt, #status")
                .expression_attribute_names("#status", "Status")
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error)?;
            for item in out.items.unwrap_or_default() {
                let st: StateItem = from_item(item)?;
                if let Some(session_id) = keys::session_id_from_sk(&st.sk) {
                    states.push(SessionState {
                        session_id,
                        signed_in_at: st.signed_in_at,
                        expires_at: st.expires_at,
                        active: st.status == SessionStatus::Active,
                    });
                }
            }
            match out.last_evaluated_key {
                Some(k) => start = Some(k),
                None => return Ok(states),
            }
        }
    }

    async fn count_newly_covered(
        &self,
        user: &UserId,
        new: Watermark,
        previous: Option<Watermark>,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        // The same rule as `Session::is_active_at(now, previous) && new.covers(..)`, evaluated by
        // DynamoDB so that only a number comes back. Integration tests hold the two to agreement.
        let mut filter =
            String::from("#status = :active AND ExpiresAt > :now AND SignedInAt <= :new_before");
        let mut values = HashMap::from([
            (":pk".to_owned(), s(keys::user_pk(user))),
            (":prefix".to_owned(), s(keys::SESSION_PREFIX)),
            (
                ":active".to_owned(),
                serde_dynamo::to_attribute_value(SessionStatus::Active)
                    .map_err(StoreError::Corrupt)?,
            ),
            (":now".to_owned(), n(now_ms.div_euclid(1000))),
            (":new_before".to_owned(), n(new.before_ms)),
        ]);
        if let Some(keep) = new.keep {
            // Key attributes can't appear in a filter: match the `SessionId` attribute instead.
            filter.push_str(" AND SessionId <> :new_keep");
            values.insert(":new_keep".into(), s(keep.to_string()));
        }
        if let Some(prev) = previous {
            filter.push_str(" AND (SignedInAt > :prev_before");
            values.insert(":prev_before".into(), n(prev.before_ms));
            if let Some(keep) = prev.keep {
                filter.push_str(" OR SessionId = :prev_keep");
                values.insert(":prev_keep".into(), s(keep.to_string()));
            }
            filter.push(')');
        }
        let mut total = 0u64;
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
                .filter_expression(&filter)
                .expression_attribute_names("#status", "Status")
                .set_expression_attribute_values(Some(values.clone()))
                .select(aws_sdk_dynamodb::types::Select::Count)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error)?;
            total += u64::try_from(out.count).unwrap_or(0);
            match out.last_evaluated_key {
                Some(k) => start = Some(k),
                None => return Ok(total),
            }
        }
    }

    async fn revoke_session(
        &self,
        user: &UserId,
        session: SessionId,
        revocation: &Revocation,
        tombstone_secs: i64,
    ) -> Result<RevokeOutcome, StoreError> {
        let now_s = revocation.at_ms.div_euclid(1000);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(session_key(user, session)))
            .update_expression(
                "SET #status = :revoked, RevokedAt = :at, RevokedBy = :by, RevokeReason = :reason, ExpiresAt = :tombstone",
            )
            .condition_expression("attribute_exists(PK) AND #status = :active AND ExpiresAt > :now")
            .expression_attribute_names("#status", "Status")
            .expression_attribute_values(":revoked", serde_dynamo::to_attribute_value(SessionStatus::Revoked).map_err(StoreError::Corrupt)?)
            .expression_attribute_values(":active", serde_dynamo::to_attribute_value(SessionStatus::Active).map_err(StoreError::Corrupt)?)
            .expression_attribute_values(":at", n(revocation.at_ms))
            .expression_attribute_values(":by", s(&revocation.by))
            .expression_attribute_values(":reason", serde_dynamo::to_attribute_value(revocation.reason).map_err(StoreError::Corrupt)?)
            .expression_attribute_values(":tombstone", n(now_s + tombstone_secs))
            .expression_attribute_values(":now", n(now_s))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                let old = out
                    .attributes
                    .ok_or_else(|| StoreError::Sdk("UpdateItem returned no old image".into()))?;
                Ok(RevokeOutcome::Revoked(Box::new(from_item(old)?)))
            }
            Err(SdkError::ServiceError(e)) => match e.into_err() {
                UpdateItemError::ConditionalCheckFailedException(ccf) => match ccf.item {
                    None => Ok(RevokeOutcome::NotFound),
                    Some(item) => {
                        let old: Session = from_item(item)?;
                        Ok(if old.status == SessionStatus::Revoked {
                            RevokeOutcome::AlreadyRevoked
                        } else {
                            RevokeOutcome::NotFound
                        })
                    }
                },
                other => Err(sdk_error(other)),
            },
            Err(e) => Err(sdk_error(e)),
        }
    }

    async fn raise_watermark(
        &self,
        user: &UserId,
        watermark: Watermark,
        revocation: &Revocation,
    ) -> Result<Watermark, StoreError> {
        let mut wanted = watermark;
        for _ in 0..WATERMARK_RETRIES {
            let keep_clause = if wanted.keep.is_some() {
                ", RevokeKeep = :keep"
            } else {
                " REMOVE RevokeKeep"
            };
            let mut request = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(profile_key(user)))
                .update_expression(format!(
                    "SET #type = :type, RevokedBefore = :before, WatermarkAt = :at, WatermarkBy = :by, WatermarkReason = :reason{keep_clause}"
                ))
                .condition_expression("attribute_not_exists(RevokedBefore) OR RevokedBefore < :before")
                .expression_attribute_names("#type", "Type")
                .expression_attribute_values(":type", s(TYPE_PROFILE))
                .expression_attribute_values(":before", n(wanted.before_ms))
                .expression_attribute_values(":at", n(revocation.at_ms))
                .expression_attribute_values(":by", s(&revocation.by))
                .expression_attribute_values(":reason", serde_dynamo::to_attribute_value(revocation.reason).map_err(StoreError::Corrupt)?)
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
            if let Some(keep) = wanted.keep {
                request = request.expression_attribute_values(":keep", s(keep.to_string()));
            }
            match request.send().await {
                Ok(_) => return Ok(wanted),
                Err(SdkError::ServiceError(e)) => match e.into_err() {
                    UpdateItemError::ConditionalCheckFailedException(ccf) => {
                        // A later watermark is in force: move just past it, so ours still wins.
                        let current = ccf
                            .item
                            .map(from_item::<Profile>)
                            .transpose()?
                            .and_then(|p| p.watermark);
                        let floor = current.map_or(wanted.before_ms, |w| w.before_ms);
                        wanted.before_ms = wanted.before_ms.max(floor + 1);
                    }
                    other => return Err(sdk_error(other)),
                },
                Err(e) => return Err(sdk_error(e)),
            }
        }
        Err(StoreError::Throttled(
            "the watermark kept moving under concurrent revoke-alls".into(),
        ))
    }
}
