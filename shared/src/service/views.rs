//! What the operations answer: rows of the listing and of the audit trail, and a created session.

use serde::Serialize;

use super::rfc3339_ms;
use crate::device::Device;
use crate::domain::{AppId, ClientKind, Location, SessionId};
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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActorView {
    #[serde(rename = "type")]
    pub kind: Actor,
    pub id: String,
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
}

impl EventView {
    pub(super) fn new(e: &AuditEvent) -> Self {
        let who = match e.actor {
            Actor::User if e.actor_id == e.target_user.as_str() => "you",
            Actor::User => "another user",
            Actor::Admin => "an admin",
            Actor::System => "the system",
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
            actor: ActorView { kind: e.actor, id: e.actor_id.clone() },
            reason: e.reason,
            scope: e.scope,
            sessions: e
                .session_ids
                .iter()
                .zip(&e.device_labels)
                .map(|(id, device)| EventSessionView { id: *id, device: device.clone() })
                .collect(),
            count: e.count,
            source_ip: e.source_ip.clone(),
            note: e.note.clone(),
            summary,
        }
    }
}
