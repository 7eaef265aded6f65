//! `DirectoryStore` on DynamoDB: profiles and workspace memberships.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};

use crate::domain::UserId;
use crate::keys;
use crate::store::{DirectoryStore, ProfileUpdate, ReadSet, SessionsStore, StoreError};

use super::codec::{attr, from_item, membership_key, profile_key, s, sk_of, MembershipItem};
use super::error::{build_error, send_error};
use super::{DynamoStore, TYPE_MEMBERSHIP, TYPE_PROFILE};

impl DirectoryStore for DynamoStore {
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
}
