//! `DirectoryStore` on DynamoDB: profiles and workspace memberships.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};

use crate::domain::{UserId, WorkspaceId};
use crate::identity::{IdentityProvider, UserIdentifier};
use crate::keys;
use crate::store::{DirectoryStore, ProfileUpdate, ReadSet, SessionsStore, StoreError};

use super::codec::{attr, from_item, key, membership_key, profile_key, s, sk_of, MembershipItem};
use super::error::{build_error, failed_condition, send_error};
use super::expr::claim_put;
use super::{DynamoStore, TYPE_IDP, TYPE_MEMBERSHIP, TYPE_PROFILE};

fn idp_key(workspace: &WorkspaceId) -> super::Item {
    key(keys::workspace_pk(workspace), keys::IDP_SK.to_owned())
}

fn claim_key(pk: String) -> super::Item {
    key(pk, keys::CLAIM_SK.to_owned())
}

/// Deletes a claim only while `owner` holds it.
fn claim_delete(table: &str, pk: String, owner: (&str, &str)) -> Result<Delete, StoreError> {
    Delete::builder()
        .table_name(table)
        .set_key(Some(claim_key(pk)))
        .condition_expression("#owner = :owner")
        .expression_attribute_names("#owner", owner.0)
        .expression_attribute_values(":owner", s(owner.1))
        .build()
        .map_err(build_error)
}

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
        let old = current.profiles.get(user).cloned().unwrap_or_default();
        let old_workspace = old.workspace_id.clone();
        let mut values =
            HashMap::from([(":type".to_owned(), s(TYPE_PROFILE)), (":sso".to_owned(), attr(update.sso_linked)?)]);
        let mut expr = String::from("SET #type = :type, SsoLinked = :sso");
        let (mut set_ids, mut remove_ids) = (Vec::new(), vec!["Email", "IdpIssuer", "IdpSubject"]);
        for id in &update.identifiers {
            match id {
                UserIdentifier::Email(email) => {
                    set_ids.push("Email = :email");
                    values.insert(":email".into(), s(email));
                    remove_ids.retain(|a| *a != "Email");
                }
                UserIdentifier::IssSub { iss, sub } => {
                    set_ids.push("IdpIssuer = :idp_iss, IdpSubject = :idp_sub");
                    values.insert(":idp_iss".into(), s(iss));
                    values.insert(":idp_sub".into(), s(sub));
                    remove_ids.retain(|a| *a != "IdpIssuer" && *a != "IdpSubject");
                }
            }
        }
        for set in set_ids {
            expr.push_str(", ");
            expr.push_str(set);
        }
        match &update.workspace_id {
            Some(ws) => {
                expr.push_str(", WorkspaceId = :ws, #role = :role");
                values.insert(":ws".into(), s(ws.as_str()));
                values.insert(":role".into(), attr(update.role)?);
            }
            None => remove_ids.extend(["WorkspaceId", "#role"]),
        }
        if !remove_ids.is_empty() {
            expr.push_str(" REMOVE ");
            expr.push_str(&remove_ids.join(", "));
        }
        // Optimistic: the workspace and the identifiers must still be what was read, or the
        // membership and identifier items would drift.
        let mut condition = match &old_workspace {
            Some(old) => {
                values.insert(":old_ws".into(), s(old.as_str()));
                "WorkspaceId = :old_ws".to_owned()
            }
            None => "attribute_not_exists(WorkspaceId)".to_owned(),
        };
        for (attr_name, placeholder, was) in [
            ("Email", ":old_email", &old.email),
            ("IdpIssuer", ":old_idp_iss", &old.idp_issuer),
            ("IdpSubject", ":old_idp_sub", &old.idp_subject),
        ] {
            match was {
                Some(v) => {
                    condition.push_str(&format!(" AND {attr_name} = {placeholder}"));
                    values.insert(placeholder.into(), s(v));
                }
                None => condition.push_str(&format!(" AND attribute_not_exists({attr_name})")),
            }
        }
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
        // The identifiers are claimed in the user's workspace: those no longer held there are freed
        // (another workspace, or gone), and the new ones claimed (rewriting the user's own).
        let owner = ("UserId", user.as_str());
        let new_claims: Vec<String> = match &update.workspace_id {
            Some(ws) => update.identifiers.iter().map(|id| keys::identifier_pk(ws, id)).collect(),
            None => Vec::new(),
        };
        if let Some(old_ws) = &old_workspace {
            for gone in old.identifiers().iter().map(|id| keys::identifier_pk(old_ws, id)) {
                if !new_claims.contains(&gone) {
                    let delete = claim_delete(&self.table, gone, owner)?;
                    items.push(TransactWriteItem::builder().delete(delete).build());
                }
            }
        }
        let first_claim = items.len();
        for pk in new_claims {
            let put = claim_put(&self.table, pk, owner, true, None)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        match self.transact(items).await? {
            Ok(()) => Ok(()),
            Err(reasons) if (first_claim..reasons.len()).any(|i| failed_condition(&reasons, i).is_some()) => {
                Err(StoreError::Taken("This email address or subject is another member's of this workspace."))
            }
            Err(_) => Err(StoreError::Conflict),
        }
    }

    async fn put_identity_provider(&self, provider: &IdentityProvider) -> Result<(), StoreError> {
        let ws = &provider.workspace_id;
        let old = self.identity_provider(ws).await?;
        let mut item: super::Item = serde_dynamo::to_item(provider).map_err(StoreError::Corrupt)?;
        item.extend(idp_key(ws));
        item.insert("Type".into(), s(TYPE_IDP));
        // Optimistic: the pair this workspace held must still be the one read, or a pair would be
        // left claimed by nobody's provider.
        let put = Put::builder().table_name(&self.table).set_item(Some(item));
        let put = match &old {
            Some(old) => put
                .condition_expression("#iss = :old_iss AND #aud = :old_aud")
                .expression_attribute_names("#iss", "Issuer")
                .expression_attribute_names("#aud", "Audience")
                .expression_attribute_values(":old_iss", s(&old.issuer))
                .expression_attribute_values(":old_aud", s(&old.audience)),
            None => put.condition_expression("attribute_not_exists(PK)"),
        }
        .build()
        .map_err(build_error)?;
        let owner = ("WorkspaceId", ws.as_str());
        let pair = claim_put(&self.table, keys::idp_pair_pk(&provider.issuer, &provider.audience), owner, true, None)?;
        let mut items =
            vec![TransactWriteItem::builder().put(put).build(), TransactWriteItem::builder().put(pair).build()];
        if let Some(old) = old.filter(|o| (&o.issuer, &o.audience) != (&provider.issuer, &provider.audience)) {
            let delete = claim_delete(&self.table, keys::idp_pair_pk(&old.issuer, &old.audience), owner)?;
            items.push(TransactWriteItem::builder().delete(delete).build());
        }
        match self.transact(items).await? {
            Ok(()) => Ok(()),
            Err(reasons) if failed_condition(&reasons, 1).is_some() => {
                Err(StoreError::Taken("This issuer and audience are another workspace's identity provider's."))
            }
            Err(_) => Err(StoreError::Conflict),
        }
    }

    async fn identity_provider(&self, workspace: &WorkspaceId) -> Result<Option<IdentityProvider>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(idp_key(workspace)))
            .consistent_read(true)
            .send()
            .await
            .map_err(send_error)?;
        out.item.map(from_item).transpose()
    }

    async fn user_by_identifier(
        &self,
        workspace: &WorkspaceId,
        id: &UserIdentifier,
    ) -> Result<Option<UserId>, StoreError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Claim {
            user_id: UserId,
        }
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(claim_key(keys::identifier_pk(workspace, id))))
            .projection_expression("UserId")
            .consistent_read(true)
            .send()
            .await
            .map_err(send_error)?;
        Ok(out.item.map(from_item::<Claim>).transpose()?.map(|c| c.user_id))
    }
}
