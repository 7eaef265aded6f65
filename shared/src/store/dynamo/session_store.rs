//! `SessionStore` for `DynamoStore`: each operation as one DynamoDB call (or one transaction).

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

use crate::domain::{SessionId, UserId};
use crate::keys;
use crate::model::{AuditEvent, Profile, Revocation, Session, SessionStatus, Watermark};
use crate::store::{
    AuditPage, Audited, ProfileUpdate, ReadResult, ReadSet, RevokeOutcome, SessionPage, SessionState, SessionStore,
    StoreError,
};

use super::codec::*;
use super::error::*;
use super::expr::*;
use super::*;

impl SessionStore for DynamoStore {
    async fn query_members(
        &self,
        workspace: &crate::domain::WorkspaceId,
        after: Option<UserId>,
        limit: u32,
    ) -> Result<crate::store::MemberPage, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND begins_with(SK, :member)")
            .expression_attribute_values(":pk", s(keys::workspace_pk(workspace)))
            .expression_attribute_values(":member", s(keys::MEMBER_SK_PREFIX))
            .set_exclusive_start_key(after.map(|u| membership_key(workspace, &u)))
            .limit(i32::try_from(limit).unwrap_or(100))
            .consistent_read(true)
            .send()
            .await
            .map_err(send_error)?;
        let members = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| from_item::<MembershipItem>(item).map(|m| (m.user_id, m.role)))
            .collect::<Result<Vec<_>, _>>()?;
        let last_evaluated = out.last_evaluated_key.as_ref().and_then(sk_of).and_then(keys::user_id_from_member_sk);
        Ok(crate::store::MemberPage { members, last_evaluated })
    }

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
        let update = watermark_swap(&self.table, user, expected, new, revocation, audit.event_id)?;
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
            .projection_expression(format!("{RECEIPTS}, {LOGOUT_DELIVERED}"))
            .consistent_read(true)
            .send()
            .await
            .map_err(send_error)?;
        let Some(mut item) = out.items.and_then(|items| items.into_iter().next()) else {
            return Ok(Default::default());
        };
        let mut receipts: std::collections::BTreeMap<String, crate::model::ProductReceipt> = match item.remove(RECEIPTS)
        {
            Some(v) => serde_dynamo::from_attribute_value(v).map_err(StoreError::Corrupt)?,
            None => Default::default(),
        };
        // Tombstones written before receipts existed name the products told in a string set.
        if let Some(AttributeValue::Ss(told)) = item.remove(LOGOUT_DELIVERED) {
            for aud in told {
                receipts.entry(aud).or_insert(crate::model::ProductReceipt {
                    status: crate::model::DeliveryStatus::Delivered,
                    attempts: 1,
                    delivered_at: None,
                    last_attempt_at: None,
                    error: None,
                    link: None,
                });
            }
        }
        Ok(receipts)
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
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(session_item(tombstone)?))
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
