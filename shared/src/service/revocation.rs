//! A revoked session's receipts: when it was revoked and by whom, when the token caches let go,
//! and where each product's back-channel logout stands.

use serde::Serialize;

use super::auth::{authorize, Subject};
use super::rfc3339_ms;
use crate::domain::SessionId;
use crate::error::ServiceError;
use crate::model::{Actor, DeliveryStatus, RevokeReason, SessionStatus};
use crate::store::SessionsStore;
use crate::token::SessionToken;

/// One product's receipt, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProductReceiptView {
    pub product: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<String>,
}

/// Who revoked it: a member sees an admin's kind only, as in the events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RevokedByView {
    #[serde(rename = "type")]
    pub kind: Actor,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// An identity provider: its issuer (`{"type": "idp", "issuer": ...}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

/// `GET /v1/sessions/{id}/revocation`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RevocationView {
    pub session_id: SessionId,
    pub revoked_at: Option<String>,
    pub reason: Option<RevokeReason>,
    pub revoked_by: Option<RevokedByView>,
    /// When the token caches let go of it (or, if Redis could not be told, when the propagation
    /// window ends every cached entry); null until the fan-out has seen the revocation.
    pub caches_invalidated_at: Option<String>,
    /// Who told the caches: `write_through` (the revoke itself, before it answered), `stream`
    /// (the fan-out behind it) or `window` (nobody reached Redis: entries end with the window);
    /// null until known.
    pub caches_invalidated_by: Option<crate::model::CachesToldBy>,
    pub products: Vec<ProductReceiptView>,
    /// The caches let go and every product is `delivered`.
    pub complete: bool,
}

fn revoked_by(raw: Option<&str>, member_view: bool, admin_ids: bool) -> Option<RevokedByView> {
    let raw = raw?;
    let (kind, id) = match raw.split_once(':') {
        Some(("user", id)) => (Actor::User, Some(id.to_owned())),
        Some(("admin", id)) => (Actor::Admin, Some(id.to_owned()).filter(|_| !member_view || admin_ids)),
        Some(("idp", issuer)) => {
            return Some(RevokedByView { kind: Actor::Idp, id: None, issuer: Some(issuer.to_owned()) })
        }
        _ if raw == "system" => (Actor::System, None),
        _ => return None,
    };
    Some(RevokedByView { kind, id, issuer: None })
}

/// The subject's revoked session `id` with its receipts. An active session is `409`; one that is
/// unknown, another user's, or ended without a revocation (expired) is `404`.
#[tracing::instrument(skip_all, fields(user_id = %token.user_id(), subject = ?subject))]
pub async fn revocation<S: SessionsStore>(
    store: &S,
    policy: &crate::config::Policy,
    token: &SessionToken,
    subject: &Subject,
    id: SessionId,
    now_ms: i64,
) -> Result<RevocationView, ServiceError> {
    let auth = authorize(store, token, subject, Some(id), now_ms).await?;
    let session = auth.session(id).ok_or(ServiceError::NotFound)?;
    let watermark = auth.watermark();
    if session.is_active_at(now_ms, watermark.as_ref()) {
        return Err(ServiceError::StillActive);
    }
    let member_view = !auth.admin;
    let view = match session.status {
        SessionStatus::Revoked => {
            let products: Vec<ProductReceiptView> = session
                .receipts
                .iter()
                .map(|(product, r)| ProductReceiptView {
                    product: product.clone(),
                    status: r.status,
                    attempts: r.attempts,
                    delivered_at: r.delivered_at.map(rfc3339_ms),
                    last_attempt_at: r.last_attempt_at.map(rfc3339_ms),
                })
                .collect();
            // The caches' time may lie ahead (Redis could not be told: the window's end).
            let complete = session.caches_invalidated_at.is_some_and(|at| at <= now_ms)
                && products.iter().all(|p| p.status == DeliveryStatus::Delivered);
            RevocationView {
                session_id: id,
                revoked_at: session.revoked_at.map(rfc3339_ms),
                reason: session.revoke_reason,
                revoked_by: revoked_by(session.revoked_by.as_deref(), member_view, policy.admin_id_visible_to_members),
                caches_invalidated_at: session.caches_invalidated_at.map(rfc3339_ms),
                caches_invalidated_by: session.caches_invalidated_by,
                products,
                complete,
            }
        }
        // Covered by a revoke-all whose sweep has not reached it yet: revoked, nothing told yet.
        SessionStatus::Active if watermark.is_some_and(|w| w.covers(session)) => RevocationView {
            session_id: id,
            revoked_at: watermark.map(|w| rfc3339_ms(w.before_ms)),
            reason: None,
            revoked_by: None,
            caches_invalidated_at: None,
            caches_invalidated_by: None,
            products: Vec::new(),
            complete: false,
        },
        // Expired or timed out: it ended, but nothing revoked it.
        SessionStatus::Active => return Err(ServiceError::NotFound),
    };
    Ok(view)
}
