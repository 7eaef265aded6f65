//! `SessionStore` over one DynamoDB table. Keys come from `crate::keys`; items ↔ structs go
//! through `serde_dynamo`.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ConditionCheck, Delete, KeysAndAttributes, Put, ReturnValue,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use serde::Deserialize;

use super::{
    AuditPage, Audited, ProfileUpdate, ReadResult, ReadSet, RevokeOutcome, SessionPage, SessionState, SessionStore,
    StoreError,
};
use crate::config::StoreTimeouts;
use crate::domain::{Role, SessionId, UserId, WorkspaceId};
use crate::keys;
use crate::model::{AuditEvent, Profile, Revocation, Session, SessionStatus, Watermark};

type Item = HashMap<String, AttributeValue>;

const TYPE_SESSION: &str = "SESSION";
/// On a tombstone: the products its back-channel logout reached (a string set).
const LOGOUT_DELIVERED: &str = "LogoutDelivered";
const TYPE_PROFILE: &str = "PROFILE";
const TYPE_AUDIT: &str = "AUDIT";
const TYPE_MEMBERSHIP: &str = "MEMBERSHIP";
/// BatchGetItem may leave keys unprocessed under load; retry this many times before giving up.
const UNPROCESSED_RETRIES: u32 = 3;

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
        Some("ThrottlingException" | "ProvisionedThroughputExceededException" | "RequestLimitExceeded")
    );
    if throttled {
        StoreError::Throttled(Box::new(err))
    } else {
        StoreError::Sdk(Box::new(err))
    }
}

/// A failed `send()`: no answer in time, or no connection (after the SDK's bounded retries), is
/// `Unavailable`; anything else is mapped as `sdk_error` does.
fn send_error<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => StoreError::Unavailable(Box::new(err)),
        other => sdk_error(other),
    }
}

fn sk_of(item: &Item) -> Option<&str> {
    item.get(keys::SK).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn pk_of(item: &Item) -> Option<&str> {
    item.get(keys::PK).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn membership_key(workspace: &WorkspaceId, user: &UserId) -> Item {
    key(keys::workspace_pk(workspace), keys::member_sk(user))
}

fn audit_item(event: &AuditEvent) -> Result<Item, StoreError> {
    let mut item: Item = serde_dynamo::to_item(event).map_err(StoreError::Corrupt)?;
    item.extend(key(keys::user_pk(&event.target_user), keys::audit_sk(&event.event_id)));
    item.insert("Type".into(), s(TYPE_AUDIT));
    Ok(item)
}

/// An audit event as a transactional Put that never overwrites one.
fn audit_put(table: &str, event: &AuditEvent) -> Result<Put, StoreError> {
    Put::builder()
        .table_name(table)
        .set_item(Some(audit_item(event)?))
        .condition_expression("attribute_not_exists(PK)")
        .build()
        .map_err(build_error)
}

fn attr<T: serde::Serialize>(v: T) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(v).map_err(StoreError::Corrupt)
}

fn build_error(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Sdk(Box::new(e))
}

/// Whether the transaction's item at `index` failed its condition, and if so the item as it was.
fn failed_condition(reasons: &[CancellationReason], index: usize) -> Option<Option<Item>> {
    let reason = reasons.get(index)?;
    (reason.code() == Some("ConditionalCheckFailed")).then(|| reason.item().cloned())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StateItem {
    #[serde(rename = "SK")]
    sk: String,
    signed_in_at: i64,
    last_active_at: i64,
    expires_at: i64,
    status: SessionStatus,
    device: DeviceLabel,
}

#[derive(Deserialize)]
struct DeviceLabel {
    label: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MembershipItem {
    workspace_id: WorkspaceId,
    user_id: UserId,
    role: Role,
}

/// The soft revoke as an update: expression, names and values (shared by the plain UpdateItem
/// and its transactional form).
struct RevokeUpdate {
    key: Item,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

const REVOKE_SET: &str =
    "SET #status = :revoked, RevokedAt = :at, RevokedBy = :by, RevokeReason = :reason, ExpiresAt = :tombstone";
/// The condition of every write to a session but its creation: it exists, is active and has not
/// expired (revoke, trust, last activity, apps).
const ACTIVE_UNEXPIRED: &str = "attribute_exists(PK) AND #status = :active AND ExpiresAt > :now";

impl RevokeUpdate {
    fn new(
        user: &UserId,
        session: SessionId,
        revocation: &Revocation,
        tombstone_secs: i64,
    ) -> Result<Self, StoreError> {
        let now_s = revocation.at_ms.div_euclid(1000);
        let values = HashMap::from([
            (":revoked".to_owned(), attr(SessionStatus::Revoked)?),
            (":active".to_owned(), attr(SessionStatus::Active)?),
            (":at".to_owned(), n(revocation.at_ms)),
            (":by".to_owned(), s(revocation.by())),
            (":reason".to_owned(), attr(revocation.reason)?),
            (":tombstone".to_owned(), n(now_s + tombstone_secs)),
            (":now".to_owned(), n(now_s)),
        ]);
        Ok(Self {
            key: session_key(user, session),
            names: HashMap::from([("#status".to_owned(), "Status".to_owned())]),
            values,
        })
    }

    /// What a failed condition means, given the item as it was.
    fn outcome_of_failure(old: Option<Item>) -> Result<RevokeOutcome, StoreError> {
        match old {
            None => Ok(RevokeOutcome::NotFound),
            Some(item) => {
                let old: Session = from_item(item)?;
                Ok(if old.status == SessionStatus::Revoked {
                    RevokeOutcome::AlreadyRevoked
                } else {
                    RevokeOutcome::NotFound
                })
            }
        }
    }
}

/// The watermark swap as an update on the profile: `new` in place of `expected`, and only if the
/// watermark in force is still `expected` (compare-and-set).
fn watermark_swap(
    table: &str,
    user: &UserId,
    expected: Option<Watermark>,
    new: Watermark,
    revocation: &Revocation,
) -> Result<Update, StoreError> {
    let keep_clause = if new.keep.is_some() { ", RevokeKeep = :keep" } else { " REMOVE RevokeKeep" };
    let mut values = HashMap::from([
        (":type".to_owned(), s(TYPE_PROFILE)),
        (":before".to_owned(), n(new.before_ms)),
        (":at".to_owned(), n(revocation.at_ms)),
        (":by".to_owned(), s(revocation.by())),
        (":reason".to_owned(), attr(revocation.reason)?),
    ]);
    if let Some(keep) = new.keep {
        values.insert(":keep".into(), s(keep.to_string()));
    }
    let condition = match expected {
        None => "attribute_not_exists(RevokedBefore)".to_owned(),
        Some(current) => {
            values.insert(":cur_before".into(), n(current.before_ms));
            match current.keep {
                Some(keep) => {
                    values.insert(":cur_keep".into(), s(keep.to_string()));
                    "RevokedBefore = :cur_before AND RevokeKeep = :cur_keep".to_owned()
                }
                None => "RevokedBefore = :cur_before AND attribute_not_exists(RevokeKeep)".to_owned(),
            }
        }
    };
    Update::builder()
        .table_name(table)
        .set_key(Some(profile_key(user)))
        .update_expression(format!(
            "SET #type = :type, RevokedBefore = :before, WatermarkAt = :at, WatermarkBy = :by, WatermarkReason = :reason{keep_clause}"
        ))
        .condition_expression(condition)
        .expression_attribute_names("#type", "Type")
        .set_expression_attribute_values(Some(values))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .map_err(build_error)
}

/// The guard of a revocation on its own: the user's watermark (if any) does not cover the session.
fn not_covered_by_watermark(
    table: &str,
    user: &UserId,
    session: SessionId,
    signed_in_at: i64,
) -> Result<ConditionCheck, StoreError> {
    ConditionCheck::builder()
        .table_name(table)
        .set_key(Some(profile_key(user)))
        .condition_expression(
            "attribute_not_exists(RevokedBefore) OR RevokedBefore < :signed_in OR RevokeKeep = :session",
        )
        .expression_attribute_values(":signed_in", n(signed_in_at))
        .expression_attribute_values(":session", s(session.to_string()))
        .build()
        .map_err(build_error)
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

impl SessionStore for DynamoStore {
    async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        if self.put_new(session_item(session)?).await? {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists)
        }
    }

    async fn read(&self, set: &ReadSet) -> Result<ReadResult, StoreError> {
        let mut keys: Vec<Item> = Vec::new();
        let mut push = |k: Item| {
            if !keys.contains(&k) {
                keys.push(k);
            }
        };
        set.sessions.iter().for_each(|(u, id)| push(session_key(u, *id)));
        set.profiles.iter().for_each(|u| push(profile_key(u)));
        set.memberships.iter().for_each(|(w, u)| push(membership_key(w, u)));
        let mut result = ReadResult::default();
        if keys.is_empty() {
            return Ok(result);
        }
        let mut pending =
            KeysAndAttributes::builder().set_keys(Some(keys)).consistent_read(true).build().map_err(build_error)?;
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
                .map_err(send_error)?;
            for item in out.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default() {
                let (pk, sk) =
                    (pk_of(&item).unwrap_or_default().to_owned(), sk_of(&item).unwrap_or_default().to_owned());
                if sk == keys::PROFILE_SK {
                    if let Some(user) = keys::user_id_from_pk(&pk) {
                        result.profiles.insert(user, from_item(item)?);
                    }
                } else if keys::session_id_from_sk(&sk).is_some() {
                    let session: Session = from_item(item)?;
                    result.sessions.insert((session.user_id.clone(), session.session_id), session);
                } else {
                    let m: MembershipItem = from_item(item)?;
                    result.memberships.insert((m.workspace_id, m.user_id), m.role);
                }
            }
            match out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) {
                Some(rest) if !rest.keys.is_empty() => pending = rest,
                _ => return Ok(result),
            }
        }
        Err(StoreError::Throttled("BatchGetItem left keys unprocessed after retries".into()))
    }

    async fn query_sessions(
        &self,
        user: &UserId,
        after: Option<SessionId>,
        limit: u32,
    ) -> Result<SessionPage, StoreError> {
        let (sessions, last) =
            self.newest_first(user, keys::SESSION_PREFIX, after.map(|id| keys::session_sk(&id)), limit).await?;
        Ok(SessionPage { sessions, last_evaluated: last.as_deref().and_then(keys::session_id_from_sk) })
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
                .projection_expression("SK, SignedInAt, LastActiveAt, ExpiresAt, #status, Device.label")
                .expression_attribute_names("#status", "Status")
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(send_error)?;
            for item in out.items.unwrap_or_default() {
                let st: StateItem = from_item(item)?;
                if let Some(session_id) = keys::session_id_from_sk(&st.sk) {
                    states.push(SessionState {
                        session_id,
                        signed_in_at: st.signed_in_at,
                        last_active_at: st.last_active_at,
                        expires_at: st.expires_at,
                        active: st.status == SessionStatus::Active,
                        device_label: st.device.label,
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
        let mut filter = String::from("#status = :active AND ExpiresAt > :now AND SignedInAt <= :new_before");
        let mut values = HashMap::from([
            (":pk".to_owned(), s(keys::user_pk(user))),
            (":prefix".to_owned(), s(keys::SESSION_PREFIX)),
            (
                ":active".to_owned(),
                serde_dynamo::to_attribute_value(SessionStatus::Active).map_err(StoreError::Corrupt)?,
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
                .map_err(send_error)?;
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
        audit: Option<Audited<'_>>,
    ) -> Result<RevokeOutcome, StoreError> {
        let u = RevokeUpdate::new(user, session, revocation, tombstone_secs)?;
        let Some(Audited { event, signed_in_at }) = audit else {
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(u.key))
                .update_expression(REVOKE_SET)
                .condition_expression(ACTIVE_UNEXPIRED)
                .set_expression_attribute_names(Some(u.names))
                .set_expression_attribute_values(Some(u.values))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            return match result {
                Ok(_) => Ok(RevokeOutcome::Revoked),
                Err(SdkError::ServiceError(e)) => match e.into_err() {
                    UpdateItemError::ConditionalCheckFailedException(ccf) => RevokeUpdate::outcome_of_failure(ccf.item),
                    other => Err(sdk_error(other)),
                },
                Err(e) => Err(send_error(e)),
            };
        };
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(u.key))
            .update_expression(REVOKE_SET)
            .condition_expression(ACTIVE_UNEXPIRED)
            .set_expression_attribute_names(Some(u.names))
            .set_expression_attribute_values(Some(u.values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;
        let put = audit_put(&self.table, event)?;
        let guard = not_covered_by_watermark(&self.table, user, session, signed_in_at)?;
        let items = vec![
            TransactWriteItem::builder().update(update).build(),
            TransactWriteItem::builder().put(put).build(),
            TransactWriteItem::builder().condition_check(guard).build(),
        ];
        match self.transact(items).await? {
            Ok(()) => Ok(RevokeOutcome::Revoked),
            Err(reasons) => {
                if let Some(old) = failed_condition(&reasons, 0) {
                    RevokeUpdate::outcome_of_failure(old)
                } else if failed_condition(&reasons, 2).is_some() {
                    // A watermark covers it: revoked already, by a revoke-all not yet swept.
                    Ok(RevokeOutcome::AlreadyRevoked)
                } else {
                    Err(StoreError::Conflict)
                }
            }
        }
    }

    async fn swap_watermark(
        &self,
        user: &UserId,
        expected: Option<Watermark>,
        new: Watermark,
        revocation: &Revocation,
        audit: &AuditEvent,
    ) -> Result<Result<(), Option<Watermark>>, StoreError> {
        let update = watermark_swap(&self.table, user, expected, new, revocation)?;
        let items = vec![
            TransactWriteItem::builder().update(update).build(),
            TransactWriteItem::builder().put(audit_put(&self.table, audit)?).build(),
        ];
        match self.transact(items).await? {
            Ok(()) => Ok(Ok(())),
            Err(reasons) => match failed_condition(&reasons, 0) {
                Some(old) => Ok(Err(old.map(from_item::<Profile>).transpose()?.and_then(|p| p.watermark))),
                None => Err(StoreError::Conflict),
            },
        }
    }

    async fn put_profile(&self, user: &UserId, update: &ProfileUpdate) -> Result<(), StoreError> {
        let current = self.read(&ReadSet { profiles: vec![user.clone()], ..Default::default() }).await?;
        let old_workspace = current.profiles.get(user).and_then(|p| p.workspace_id.clone());
        let mut values =
            HashMap::from([(":type".to_owned(), s(TYPE_PROFILE)), (":sso".to_owned(), attr(update.sso_linked)?)]);
        let mut expr = String::from("SET #type = :type, SsoLinked = :sso");
        match &update.workspace_id {
            Some(ws) => {
                expr.push_str(", WorkspaceId = :ws, #role = :role");
                values.insert(":ws".into(), s(ws.as_str()));
                values.insert(":role".into(), attr(update.role)?);
            }
            None => expr.push_str(" REMOVE WorkspaceId, #role"),
        }
        // Optimistic: the workspace must still be what was read, or the memberships would drift.
        let condition = match &old_workspace {
            Some(old) => {
                values.insert(":old_ws".into(), s(old.as_str()));
                "WorkspaceId = :old_ws"
            }
            None => "attribute_not_exists(WorkspaceId)",
        };
        let profile = Update::builder()
            .table_name(&self.table)
            .set_key(Some(profile_key(user)))
            .update_expression(expr)
            .condition_expression(condition)
            .expression_attribute_names("#type", "Type")
            .expression_attribute_names("#role", "Role")
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(build_error)?;
        let mut items = vec![TransactWriteItem::builder().update(profile).build()];
        if let Some(old) = old_workspace.as_ref().filter(|old| update.workspace_id.as_ref() != Some(*old)) {
            let delete = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(membership_key(old, user)))
                .build()
                .map_err(build_error)?;
            items.push(TransactWriteItem::builder().delete(delete).build());
        }
        if let Some(ws) = &update.workspace_id {
            let mut item = membership_key(ws, user);
            item.insert("Type".into(), s(TYPE_MEMBERSHIP));
            item.insert("WorkspaceId".into(), s(ws.as_str()));
            item.insert("UserId".into(), s(user.as_str()));
            item.insert("Role".into(), attr(update.role)?);
            let put = Put::builder().table_name(&self.table).set_item(Some(item)).build().map_err(build_error)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        match self.transact(items).await? {
            Ok(()) => Ok(()),
            Err(_) => Err(StoreError::Conflict),
        }
    }

    async fn set_trusted(
        &self,
        user: &UserId,
        session: SessionId,
        trusted: bool,
        now_ms: i64,
    ) -> Result<Option<Session>, StoreError> {
        let values = vec![(":trusted", attr(trusted)?)];
        let updated = self.update_active_session(user, session, now_ms, "SET Trusted = :trusted", None, values).await?;
        updated.map(from_item).transpose()
    }

    async fn put_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        // Written already (a redelivered record) is not an error: nothing to do.
        self.put_new(audit_item(event)?).await.map(|_| ())
    }

    async fn touch_session(
        &self,
        user: &UserId,
        session: SessionId,
        now_ms: i64,
        stale_before_ms: i64,
    ) -> Result<(), StoreError> {
        let values = vec![(":now_ms", n(now_ms)), (":stale", n(stale_before_ms))];
        let fresher = Some("LastActiveAt < :stale");
        self.update_active_session(user, session, now_ms, "SET LastActiveAt = :now_ms", fresher, values)
            .await
            .map(|_| ())
    }

    async fn add_app(
        &self,
        user: &UserId,
        session: SessionId,
        app: &crate::domain::AppId,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let values = vec![(":apps", AttributeValue::L(vec![s(app.as_str())])), (":app", s(app.as_str()))];
        let missing = Some("NOT contains(Apps, :app)");
        self.update_active_session(user, session, now_ms, "SET Apps = list_append(Apps, :apps)", missing, values)
            .await
            .map(|_| ())
    }

    async fn logout_delivered(
        &self,
        user: &UserId,
        session: SessionId,
    ) -> Result<std::collections::BTreeSet<String>, StoreError> {
        // A Query on the one key (not GetItem): the fan-out's role reads with Query only.
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND SK = :sk")
            .expression_attribute_values(":pk", s(keys::user_pk(user)))
            .expression_attribute_values(":sk", s(keys::session_sk(&session)))
            .projection_expression(LOGOUT_DELIVERED)
            .consistent_read(true)
            .send()
            .await
            .map_err(send_error)?;
        Ok(match out.items.and_then(|items| items.into_iter().next()).and_then(|mut i| i.remove(LOGOUT_DELIVERED)) {
            Some(AttributeValue::Ss(auds)) => auds.into_iter().collect(),
            _ => Default::default(),
        })
    }

    async fn mark_logout_delivered(&self, user: &UserId, session: SessionId, aud: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(session_key(user, session)))
            .update_expression(format!("ADD {LOGOUT_DELIVERED} :aud"))
            // Only on the tombstone: never recreate an item TTL removed.
            .condition_expression("attribute_exists(PK) AND #status = :revoked")
            .expression_attribute_names("#status", "Status")
            .expression_attribute_values(":aud", AttributeValue::Ss(vec![aud.to_owned()]))
            .expression_attribute_values(":revoked", attr(SessionStatus::Revoked)?)
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
