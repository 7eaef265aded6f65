//! `SessionsStore` on DynamoDB: sessions, the authorisation read, revocations and the watermark.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update};

use crate::domain::{SessionId, UserId};
use crate::keys;
use crate::model::{AuditEvent, Profile, Revocation, Session, SessionStatus, Watermark};
use crate::store::{
    Audited, Once, ReadResult, ReadSet, RevokeOutcome, SessionPage, SessionState, SessionsStore, StoreError,
};

use super::codec::{attr, from_item, n, s, session_item, StateItem};
use super::error::{build_error, failed_condition, sdk_error, send_error};
use super::expr::{
    audit_put, claim_put, not_covered_by_watermark, watermark_swap, RevokeUpdate, ACTIVE_UNEXPIRED, REVOKE_SET,
};
use super::DynamoStore;

/// The soft revoke's update, on either of the SDK's builders (the same methods, no common trait):
/// an UpdateItem on its own (a watermark's sweep), or an Update in the transaction with its audit
/// event. Only while the session is active and unexpired; a failed condition returns the item.
macro_rules! soft_revoke {
    ($builder:expr, $table:expr, $u:expr) => {
        $builder
            .table_name($table)
            .set_key(Some($u.key))
            .update_expression(REVOKE_SET)
            .condition_expression(ACTIVE_UNEXPIRED)
            .set_expression_attribute_names(Some($u.names))
            .set_expression_attribute_values(Some($u.values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
    };
}

impl SessionsStore for DynamoStore {
    async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        if self.put_new(session_item(session)?).await? {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists)
        }
    }

    async fn read(&self, set: &ReadSet) -> Result<ReadResult, StoreError> {
        self.batch_read(set).await
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
        let items =
            self.session_items(user, "SK, SignedInAt, LastActiveAt, ExpiresAt, #status, Device.label", false).await?;
        let mut states = Vec::with_capacity(items.len());
        for item in items {
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
        Ok(states)
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
            let result = soft_revoke!(self.client.update_item(), &self.table, u).send().await;
            return match result {
                Ok(_) => Ok(RevokeOutcome::Revoked),
                Err(SdkError::ServiceError(e)) => match e.into_err() {
                    UpdateItemError::ConditionalCheckFailedException(ccf) => RevokeUpdate::outcome_of_failure(ccf.item),
                    other => Err(sdk_error(other)),
                },
                Err(e) => Err(send_error(e)),
            };
        };
        let update = soft_revoke!(Update::builder(), &self.table, u).build().map_err(build_error)?;
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
        once: Option<&Once>,
    ) -> Result<Result<(), Option<Watermark>>, StoreError> {
        let update = watermark_swap(&self.table, user, expected, new, revocation, audit.event_id)?;
        let mut items = vec![
            TransactWriteItem::builder().update(update).build(),
            TransactWriteItem::builder().put(audit_put(&self.table, audit)?).build(),
        ];
        if let Some(once) = once {
            let pk = keys::jti_pk(&once.workspace, &once.issuer, &once.jti);
            let put = claim_put(&self.table, pk, ("UserId", user.as_str()), false, Some(once.keep_until_secs))?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        match self.transact(items).await? {
            Ok(()) => Ok(Ok(())),
            Err(reasons) if once.is_some() && failed_condition(&reasons, 2).is_some() => Err(StoreError::Replayed),
            Err(reasons) => match failed_condition(&reasons, 0) {
                Some(old) => Ok(Err(old.map(from_item::<Profile>).transpose()?.and_then(|p| p.watermark))),
                None => Err(StoreError::Conflict),
            },
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
    ) -> Result<bool, StoreError> {
        // Never past `MAX_APPS`, whatever the caller checked: the bound holds in the write itself.
        let values = vec![
            (":apps", AttributeValue::L(vec![s(app.as_str())])),
            (":app", s(app.as_str())),
            (":max_apps", AttributeValue::N(crate::model::MAX_APPS.to_string())),
        ];
        let missing = Some("NOT contains(Apps, :app) AND size(Apps) < :max_apps");
        self.update_active_session(user, session, now_ms, "SET Apps = list_append(Apps, :apps)", missing, values)
            .await
            .map(|written| written.is_some())
    }
}
