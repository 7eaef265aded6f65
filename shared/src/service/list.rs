//! Listing sessions: one Query per page, the current session first.

use serde::Serialize;

use super::auth::{after_token, authorize, Subject};
use super::bad;
use super::views::SessionView;
use crate::cursor::{self, Cursor, Listing, Position};
use crate::domain::{PageSize, SessionId};
use crate::error::ServiceError;
use crate::model::Session;
use crate::store::SessionsStore;
use crate::token::SessionToken;

/// A listing's query parameters, as they came.
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    pub limit: PageSize,
    pub cursor: Option<Cursor>,
    pub include_cli: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionListing {
    pub sessions: Vec<SessionView>,
    pub next_cursor: Option<String>,
}

/// Active first-party sessions of the subject: for self-service the current session first, then
/// newest first. One Query per page, once the token is verified.
#[tracing::instrument(skip_all, fields(user_id = %token.user_id(), subject = ?subject))]
pub async fn list_sessions<S: SessionsStore>(
    store: &S,
    token: &SessionToken,
    subject: &Subject,
    query: &ListQuery,
    now_ms: i64,
) -> Result<SessionListing, ServiceError> {
    let (limit, include_cli) = (query.limit.get(), query.include_cli);
    let owner = match subject {
        Subject::Own => token.user_id().clone(),
        Subject::Member(u) => u.clone(),
    };
    let decoded = query.cursor.as_ref().map(|c| cursor::decode(c.as_str(), &owner, Listing::Sessions)).transpose();
    let position = after_token(store, token, decoded.map_err(|e| bad(e.0)), now_ms).await?;
    // Self-service shows the current session in the first page's first slot.
    let own = *subject == Subject::Own;
    let first_page_with_current = own && position.is_none();
    let query_limit = if first_page_with_current { limit - 1 } else { limit };
    let after = match position {
        Some(Position::After(id)) => Some(SessionId::from_ulid(id)),
        _ => None,
    };
    let page = async {
        if query_limit == 0 {
            return Ok(None);
        }
        store.query_sessions(&owner, after, query_limit).await.map(Some).map_err(ServiceError::from)
    };
    // The token first, then the partition: a forged token for a known user must not cost a
    // strongly consistent Query of up to 100 items. (Measured in `infra/bench.sh handlers`: the
    // sequential read adds one small BatchGetItem's latency.)
    let auth = authorize(store, token, subject, None, now_ms).await?;
    let page = page.await?;

    let current = own.then_some(&auth.principal.session);
    let watermark = auth.watermark();
    let listed = |s: &Session| s.client.is_listed(include_cli) && s.is_active_at(now_ms, watermark.as_ref());
    let mut sessions = Vec::with_capacity(limit as usize);
    if let Some(current) = current.filter(|c| first_page_with_current && listed(c)) {
        sessions.push(SessionView::new(current, true));
    }
    let next_cursor = match page {
        None => Some(cursor::encode(&owner, Listing::Sessions, Position::Top)),
        Some(p) => {
            let not_current = |s: &&Session| current.is_none_or(|c| c.session_id != s.session_id);
            sessions.extend(
                p.sessions.iter().filter(not_current).filter(|s| listed(s)).map(|s| SessionView::new(s, false)),
            );
            p.last_evaluated.map(|id| cursor::encode(&owner, Listing::Sessions, Position::After(id.ulid())))
        }
    };
    Ok(SessionListing { sessions, next_cursor })
}
