//! The audit trail: a subject's revocation events, newest first.

use serde::Serialize;

use super::auth::{authorize, Subject};
use super::bad;
use super::views::{EventView, ReceiptSummary, Viewer};
use crate::config::Policy;
use crate::cursor::{self, Cursor, Listing, Position};
use crate::domain::PageSize;
use crate::error::ServiceError;
use crate::model::{AuditEvent, AuditScope};
use crate::store::{AuditStore, ReceiptsStore, SessionsStore};
use crate::token::SessionToken;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventListing {
    pub events: Vec<EventView>,
    pub next_cursor: Option<String>,
}

/// The subject's recent revocation events, newest first, one Query per page.
#[tracing::instrument(skip_all, fields(user_id = %token.user_id(), subject = ?subject))]
pub async fn list_events<S: SessionsStore + ReceiptsStore + AuditStore>(
    store: &S,
    policy: &Policy,
    token: &SessionToken,
    subject: &Subject,
    limit: PageSize,
    cursor: Option<&Cursor>,
    now_ms: i64,
) -> Result<EventListing, ServiceError> {
    let auth = authorize(store, token, subject, None, now_ms).await?;
    let after = match cursor
        .map(|c| cursor::decode(c.as_str(), &auth.target, Listing::Events))
        .transpose()
        .map_err(|e| bad(e.0))?
    {
        Some(Position::After(id)) => Some(id),
        Some(Position::Top) | None => None,
    };
    // Admins see the full actor; a member reading their own history sees "an admin of
    // <workspace>", never the admin's IP address (nor their id, unless the policy shows it).
    let viewer = if auth.admin {
        Viewer::Admin
    } else {
        Viewer::Member {
            workspace: auth.target_profile.workspace_id.clone(),
            admin_ids: policy.admin_id_visible_to_members,
        }
    };
    let page = store.query_audit(&auth.target, after, limit.get()).await?;
    // One more Query for the page's receipts: the tombstones still kept. A per-session event's
    // (an expiry's too) are its sessions'; a revoke-all's, those its sweep revoked (stamped with
    // its time), complete only once the sweep is done.
    let tombstones = if page.events.is_empty() { Vec::new() } else { store.tombstones(&auth.target).await? };
    let receipts = |e: &AuditEvent| -> Option<ReceiptSummary> {
        match e.scope {
            AuditScope::Sessions => {
                ReceiptSummary::of(tombstones.iter().filter(|t| e.session_ids.contains(&t.session_id)), true, now_ms)
            }
            AuditScope::All | AuditScope::Others => {
                ReceiptSummary::of(tombstones.iter().filter(|t| t.revoked_at == e.at), e.swept_at.is_some(), now_ms)
            }
        }
    };
    Ok(EventListing {
        events: page.events.iter().map(|e| EventView::new(e, &viewer, receipts(e))).collect(),
        next_cursor: page.last_evaluated.map(|id| cursor::encode(&auth.target, Listing::Events, Position::After(id))),
    })
}
