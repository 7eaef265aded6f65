//! Users (internal): the identity system sets a user's workspace, role and SSO link.

use serde::{Deserialize, Serialize};

use super::bad;
use crate::domain::{Role, UserId, WorkspaceId};
use crate::error::ServiceError;
use crate::store::ProfileUpdate;
use crate::store::{DirectoryStore, SessionsStore};

/// Body of `PUT /v1/internal/users/{user_id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserProfileInput {
    #[serde(default, deserialize_with = "crate::domain::body::not_null")]
    pub workspace_id: Option<WorkspaceId>,
    #[serde(default, deserialize_with = "crate::domain::body::not_null")]
    pub role: Option<Role>,
    #[serde(default, deserialize_with = "crate::domain::body::not_null")]
    pub sso_linked: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserProfileView {
    pub user_id: UserId,
    pub workspace_id: Option<WorkspaceId>,
    pub role: Option<Role>,
    pub sso_linked: bool,
}

/// Sets a user's workspace, role and SSO link (the identity system's word, through an internal route).
#[tracing::instrument(skip_all, fields(user_id = %user))]
pub async fn put_user<S: SessionsStore + DirectoryStore>(
    store: &S,
    user: &UserId,
    input: UserProfileInput,
) -> Result<UserProfileView, ServiceError> {
    if input.role.is_some() && input.workspace_id.is_none() {
        return Err(bad("role needs a workspace_id"));
    }
    let update = ProfileUpdate {
        role: input.role.unwrap_or(Role::Member),
        workspace_id: input.workspace_id,
        sso_linked: input.sso_linked.unwrap_or(false),
    };
    store.put_profile(user, &update).await?;
    Ok(UserProfileView {
        user_id: user.clone(),
        role: update.workspace_id.as_ref().map(|_| update.role),
        workspace_id: update.workspace_id,
        sso_linked: update.sso_linked,
    })
}
