//! The audit trail: a subject's revocation events, newest first.

use serde::Serialize;

use super::auth::{authorize, Subject};
use super::views::EventView;
use super::{bad, parse_limit};
use crate::cursor::{self, Listing, Position};
use crate::error::ServiceError;
use crate::store::SessionStore;
use crate::token::SessionToken;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventListing {
    pub events: Vec<EventView>,
    pub next_cursor: Option<String>,
}

/// The subject's recent revocation events, newest first, one Query per page.
#[tracing::instrument(skip_all, fields(user_id = %token.user_id(), subject = ?subject))]
pub async fn list_events<S: SessionStore>(
    store: &S,
    token: &SessionToken,
    subject: &Subject,
    limit: Option<&str>,
    cursor_raw: Option<&str>,
    now_ms: i64,
) -> Result<EventListing, ServiceError> {
    let limit = parse_limit(limit)?;
    let auth = authorize(store, token, subject, None, now_ms).await?;
    let after =
        match cursor_raw.map(|c| cursor::decode(c, &auth.target, Listing::Events)).transpose().map_err(|e| bad(e.0))? {
            Some(Position::After(id)) => Some(id),
            Some(Position::Top) | None => None,
        };
    let page = store.query_audit(&auth.target, after, limit).await?;
    Ok(EventListing {
        events: page.events.iter().map(EventView::new).collect(),
        next_cursor: page.last_evaluated.map(|id| cursor::encode(&auth.target, Listing::Events, Position::After(id))),
    })
}
