//! Items and attribute values: keys (from `crate::keys`), structs ↔ items through `serde_dynamo`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::Deserialize;

use crate::domain::{Role, SessionId, UserId, WorkspaceId};
use crate::keys;
use crate::model::{AuditEvent, Session, SessionStatus};
use crate::store::StoreError;

use super::{Item, TYPE_AUDIT, TYPE_SESSION};

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn key(pk: String, sk: String) -> Item {
    HashMap::from([(keys::PK.to_owned(), s(pk)), (keys::SK.to_owned(), s(sk))])
}

pub(super) fn session_key(user: &UserId, session: SessionId) -> Item {
    key(keys::user_pk(user), keys::session_sk(&session))
}

pub(super) fn profile_key(user: &UserId) -> Item {
    key(keys::user_pk(user), keys::PROFILE_SK.to_owned())
}

/// A session as a full item: its attributes plus `PK`, `SK` and `Type`.
pub(crate) fn session_item(session: &Session) -> Result<Item, StoreError> {
    let mut item: Item = serde_dynamo::to_item(session).map_err(StoreError::Corrupt)?;
    item.extend(session_key(&session.user_id, session.session_id));
    item.insert("Type".into(), s(TYPE_SESSION));
    Ok(item)
}

pub(super) fn from_item<T: for<'de> Deserialize<'de>>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(StoreError::Corrupt)
}
pub(super) fn sk_of(item: &Item) -> Option<&str> {
    item.get(keys::SK).and_then(|v| v.as_s().ok()).map(String::as_str)
}

pub(super) fn pk_of(item: &Item) -> Option<&str> {
    item.get(keys::PK).and_then(|v| v.as_s().ok()).map(String::as_str)
}

pub(super) fn membership_key(workspace: &WorkspaceId, user: &UserId) -> Item {
    key(keys::workspace_pk(workspace), keys::member_sk(user))
}

pub(super) fn audit_item(event: &AuditEvent) -> Result<Item, StoreError> {
    let mut item: Item = serde_dynamo::to_item(event).map_err(StoreError::Corrupt)?;
    item.extend(key(keys::user_pk(&event.target_user), keys::audit_sk(&event.event_id)));
    item.insert("Type".into(), s(TYPE_AUDIT));
    Ok(item)
}
pub(super) fn attr<T: serde::Serialize>(v: T) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(v).map_err(StoreError::Corrupt)
}
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct StateItem {
    #[serde(rename = "SK")]
    pub(super) sk: String,
    pub(super) signed_in_at: i64,
    pub(super) last_active_at: i64,
    pub(super) expires_at: i64,
    pub(super) status: SessionStatus,
    pub(super) device: DeviceLabel,
}

#[derive(Deserialize)]
pub(super) struct DeviceLabel {
    pub(super) label: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct MembershipItem {
    pub(super) workspace_id: WorkspaceId,
    pub(super) user_id: UserId,
    pub(super) role: Role,
}
