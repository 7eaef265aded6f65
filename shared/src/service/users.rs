//! Users (internal): the identity system sets a user's workspace, role, SSO link, and the
//! identifiers the workspace's identity provider may name them by.

use serde::{Deserialize, Serialize};

use super::bad;
use crate::domain::{Role, UserId, WorkspaceId};
use crate::error::ServiceError;
use crate::identity::UserIdentifier;
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
    /// The address the workspace's identity provider may name the user by (stored lower-cased).
    #[serde(default, deserialize_with = "crate::domain::body::not_null")]
    pub email: Option<String>,
    /// The user's subject at the workspace's identity provider.
    #[serde(default, deserialize_with = "crate::domain::body::not_null")]
    pub idp_subject: Option<IdpSubject>,
}

/// An issuer and the user's subject there.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdpSubject {
    pub iss: String,
    pub sub: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserProfileView {
    pub user_id: UserId,
    pub workspace_id: Option<WorkspaceId>,
    pub role: Option<Role>,
    pub sso_linked: bool,
    pub email: Option<String>,
    pub idp_subject: Option<IdpSubject>,
}

/// Sets a user's workspace, role, SSO link and identifiers (the identity system's word, through an
/// internal route). What the body leaves out is cleared: a PUT sets the whole profile.
#[tracing::instrument(skip_all, fields(user_id = %user))]
pub async fn put_user<S: SessionsStore + DirectoryStore>(
    store: &S,
    user: &UserId,
    input: UserProfileInput,
) -> Result<UserProfileView, ServiceError> {
    if input.role.is_some() && input.workspace_id.is_none() {
        return Err(bad("role needs a workspace_id"));
    }
    let mut identifiers = Vec::new();
    if let Some(email) = &input.email {
        identifiers.push(UserIdentifier::email(email).map_err(bad)?);
    }
    if let Some(IdpSubject { iss, sub }) = &input.idp_subject {
        identifiers.push(UserIdentifier::iss_sub(iss, sub).map_err(bad)?);
    }
    let update = ProfileUpdate {
        role: input.role.unwrap_or(Role::Member),
        workspace_id: input.workspace_id,
        sso_linked: input.sso_linked.unwrap_or(false),
        identifiers,
    };
    store.put_profile(user, &update).await?;
    let mut view = UserProfileView {
        user_id: user.clone(),
        role: update.workspace_id.as_ref().map(|_| update.role),
        workspace_id: update.workspace_id,
        sso_linked: update.sso_linked,
        email: None,
        idp_subject: None,
    };
    for id in update.identifiers {
        match id {
            UserIdentifier::Email(e) => view.email = Some(e),
            UserIdentifier::IssSub { iss, sub } => view.idp_subject = Some(IdpSubject { iss, sub }),
        }
    }
    Ok(view)
}
