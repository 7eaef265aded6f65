//! `GET /v1/admin/members`: the members of the caller's workspace, for its admins.

use serde::Serialize;

use crate::cursor::{self, Cursor};
use crate::domain::{PageSize, Role, UserId};
use crate::error::ServiceError;
use crate::store::ReadSet;
use crate::store::{DirectoryStore, SessionsStore};
use crate::token::SessionToken;

use super::authenticate;

#[derive(Debug, Clone, Default)]
pub struct MembersQuery {
    pub limit: PageSize,
    pub cursor: Option<Cursor>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberView {
    pub user_id: UserId,
    pub role: Role,
    pub sso_linked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberListing {
    pub members: Vec<MemberView>,
    pub next_cursor: Option<String>,
}

/// A page of the caller's workspace's members (user id order), each with its role and whether it
/// signs in through SSO. Admins only: a member gets `403`, a user in no workspace too.
pub async fn list_members<S: SessionsStore + DirectoryStore>(
    store: &S,
    token: &SessionToken,
    query: &MembersQuery,
    now_ms: i64,
) -> Result<MemberListing, ServiceError> {
    let principal = authenticate(store, token, now_ms).await?;
    let Some(workspace) = principal.profile.workspace_id.clone().filter(|w| principal.profile.is_admin_of(w)) else {
        return Err(ServiceError::Forbidden("Only workspace admins can list the workspace's members.".into()));
    };
    let after = match &query.cursor {
        Some(c) => Some(cursor::decode_member(c.as_str(), &workspace).map_err(|e| ServiceError::BadRequest(e.0))?),
        None => None,
    };
    let page = store.query_members(&workspace, after, query.limit.get()).await?;
    let profiles = if page.members.is_empty() {
        Default::default()
    } else {
        let set = ReadSet { profiles: page.members.iter().map(|(u, _)| u.clone()).collect(), ..Default::default() };
        store.read(&set).await?.profiles
    };
    let members = page
        .members
        .into_iter()
        .map(|(user_id, role)| {
            let sso_linked = profiles.get(&user_id).is_some_and(|p| p.is_sso_linked());
            MemberView { user_id, role, sso_linked }
        })
        .collect();
    let next_cursor = page.last_evaluated.map(|u| cursor::encode_member(&workspace, &u));
    Ok(MemberListing { members, next_cursor })
}
