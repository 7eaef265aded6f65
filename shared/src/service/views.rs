//! What the operations answer: rows of the listing and of the audit trail, and a created session.

use serde::Serialize;

use super::rfc3339_ms;
use crate::device::Device;
use crate::domain::{AppId, ClientKind, Location, SessionId, WorkspaceId};
use crate::model::{Actor, AuditEvent, AuditScope, RevokeReason, Session};

#[derive(Debug, Serialize)]
pub struct CreatedSession {
    pub session_id: SessionId,
    /// Shown once; only its hash is stored.
    pub token: String,
    pub expires_at: String,
}

/// One row of the listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionView {
    pub id: SessionId,
    pub current: bool,
    pub apps: Vec<AppId>,
    pub client: ClientKind,
    pub device: Device,
    pub location: Option<Location>,
    pub signed_in_at: String,
    pub last_active_at: String,
    pub trusted: bool,
    pub expires_at: String,
}

impl SessionView {
    pub(super) fn new(s: &Session, current: bool) -> Self {
        Self {
            id: s.session_id,
            current,
            apps: s.apps.clone(),
            client: s.client,
            device: s.device.clone(),
            location: s.location.clone(),
            signed_in_at: rfc3339_ms(s.signed_in_at),
            last_active_at: rfc3339_ms(s.last_active_at),
            trusted: s.trusted,
            expires_at: rfc3339_ms(s.expires_at * 1000),
        }
    }
}

/// Who did it. A member reading their own history sees an admin as `{"type": "admin",
/// "workspace": ...}`, with the admin's `id` only where the policy shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActorView {
    #[serde(rename = "type")]
    pub kind: Actor,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<WorkspaceId>,
    /// An identity provider: its issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

/// Who reads the audit trail, which decides how much of an admin's action they see.
#[derive(Debug, Clone)]
pub(super) enum Viewer {
    /// A workspace admin, on a member's history: everything.
    Admin,
    /// The member, on their own history: an admin is "an admin of <workspace>", without the
    /// admin's IP address, and without their id unless `admin_ids`.
    Member { workspace: Option<WorkspaceId>, admin_ids: bool },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventSessionView {
    pub id: SessionId,
    pub device: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventView {
    pub id: String,
    pub at: String,
    pub actor: ActorView,
    pub reason: RevokeReason,
    pub scope: AuditScope,
    pub sessions: Vec<EventSessionView>,
    pub count: u64,
    pub source_ip: Option<String>,
    pub note: Option<String>,
    /// A sentence for the row, e.g. "Chrome on macOS signed out by an admin".
    pub summary: String,
    /// Where the revocation's receipts stand, over every session it revoked (a revoke-all: every
    /// session its sweep reached). Null when none is kept: once the tombstones are gone
    /// (`TOMBSTONE_TTL_SECONDS`).
    pub receipts: Option<ReceiptSummary>,
}

/// An event's receipts in numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceiptSummary {
    /// Sessions with a tombstone.
    pub sessions: u64,
    /// Product receipts over those sessions, by status.
    pub products: u64,
    pub delivered: u64,
    pub pending: u64,
    pub failed: u64,
    /// When the last cache let go and the last product was told, once all are (and, for a
    /// revoke-all, once its sweep has reached every session); else null.
    pub completed_at: Option<String>,
}

impl ReceiptSummary {
    /// Over `tombstones`; `settled`: every session the revocation covers is among them (a
    /// revoke-all's sweep is done).
    pub(super) fn of<'t>(
        tombstones: impl IntoIterator<Item = &'t crate::store::Tombstone>,
        settled: bool,
        now_ms: i64,
    ) -> Option<Self> {
        use crate::model::DeliveryStatus;
        let mut summary = Self { sessions: 0, products: 0, delivered: 0, pending: 0, failed: 0, completed_at: None };
        let (mut last, mut complete) = (0i64, true);
        for t in tombstones {
            summary.sessions += 1;
            match t.caches_invalidated_at {
                Some(at) => last = last.max(at),
                None => complete = false,
            }
            for r in t.receipts.values() {
                summary.products += 1;
                match r.status {
                    DeliveryStatus::Delivered => {
                        summary.delivered += 1;
                        last = last.max(r.delivered_at.unwrap_or(0));
                    }
                    DeliveryStatus::Pending => summary.pending += 1,
                    DeliveryStatus::Failed => summary.failed += 1,
                }
            }
        }
        complete &= settled && summary.pending == 0 && summary.failed == 0 && last <= now_ms;
        summary.completed_at = complete.then(|| rfc3339_ms(last));
        (summary.sessions > 0).then_some(summary)
    }
}

impl EventView {
    pub(super) fn new(e: &AuditEvent, viewer: &Viewer, receipts: Option<ReceiptSummary>) -> Self {
        let (by_hidden_admin, workspace, show_admin_id) = match viewer {
            Viewer::Admin => (false, None, true),
            // The admin's workspace when they acted; events from before it was kept, the member's.
            Viewer::Member { workspace, admin_ids } => {
                (e.actor == Actor::Admin, e.actor_workspace.clone().or_else(|| workspace.clone()), *admin_ids)
            }
        };
        let of_workspace = workspace.as_ref().filter(|_| by_hidden_admin).map(|w| format!("an admin of {w}"));
        let who = match e.actor {
            Actor::User if e.actor_id == e.target_user.as_str() => "you",
            Actor::User => "another user",
            Actor::Admin => of_workspace.as_deref().unwrap_or("an admin"),
            Actor::System => "the system",
            Actor::Idp => "your organisation's identity provider",
        };
        let summary = match (e.scope, e.reason) {
            (_, RevokeReason::Expired) => format!("{} expired", e.device_labels.join(", ")),
            (_, RevokeReason::SessionLimit) => {
                format!("{} signed out: too many active sessions", e.device_labels.join(", "))
            }
            (AuditScope::Sessions, _) => format!("{} signed out by {who}", e.device_labels.join(", ")),
            (AuditScope::All, _) => format!("All sessions ({}) signed out by {who}", e.count),
            (AuditScope::Others, _) => format!("All other sessions ({}) signed out by {who}", e.count),
        };
        Self {
            id: e.event_id.to_string(),
            at: rfc3339_ms(e.at),
            actor: if e.actor == Actor::Idp {
                ActorView {
                    kind: e.actor,
                    id: None,
                    workspace: e.actor_workspace.clone(),
                    issuer: Some(e.actor_id.clone()),
                }
            } else {
                ActorView {
                    kind: e.actor,
                    id: (!by_hidden_admin || show_admin_id).then(|| e.actor_id.clone()),
                    workspace: if by_hidden_admin { workspace } else { None },
                    issuer: None,
                }
            },
            reason: e.reason,
            scope: e.scope,
            sessions: e
                .session_ids
                .iter()
                .zip(&e.device_labels)
                .map(|(id, device)| EventSessionView { id: *id, device: device.clone() })
                .collect(),
            count: e.count,
            source_ip: if by_hidden_admin { None } else { e.source_ip.clone() },
            note: e.note.clone(),
            summary,
            receipts,
        }
    }
}
