//! Who is calling, and on whose sessions: the token checked against the store (`authenticate`),
//! the caller authorised on a subject (`authorize`), and the audit event every revocation writes.

use crate::config::Policy;
use crate::domain::{SessionId, UserId};
use crate::error::ServiceError;
use crate::model::{Actor, AuditEvent, AuditScope, Profile, Revocation, RevokeReason, Session, Watermark};
use crate::store::{ReadResult, ReadSet, SessionsStore};
use crate::token::{SessionToken, TokenHash};

use super::internal;

/// The caller: a validated token's session and its user's profile.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: UserId,
    pub session: Session,
    pub profile: Profile,
}

/// The caller as a request presents it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: SessionToken,
    /// The client's IP as the gateway saw it, for the audit trail.
    pub source_ip: Option<String>,
}

/// Whose sessions an operation acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// The caller's own (self-service).
    Own,
    /// A member of the caller's workspace (admin routes).
    Member(UserId),
}

/// The caller, authorised on a subject, with what was read on the way.
#[derive(Debug)]
pub(super) struct Authorized {
    pub(super) principal: Principal,
    pub(super) target: UserId,
    pub(super) target_profile: Profile,
    pub(super) admin: bool,
    pub(super) read: ReadResult,
}

impl Authorized {
    pub(super) fn session(&self, id: SessionId) -> Option<&Session> {
        self.read.sessions.get(&(self.target.clone(), id))
    }

    pub(super) fn watermark(&self) -> Option<Watermark> {
        self.target_profile.watermark
    }

    /// The acting admin's workspace, for the audit event; `None` for self-service.
    pub(super) fn admin_workspace(&self) -> Option<crate::domain::WorkspaceId> {
        self.admin.then(|| self.principal.profile.workspace_id.clone()).flatten()
    }

    pub(super) fn revocation(&self, caller: &Caller, reason: RevokeReason, at_ms: i64) -> Revocation {
        Revocation {
            at_ms,
            actor: if self.admin { Actor::Admin } else { Actor::User },
            actor_id: self.principal.user_id.to_string(),
            reason,
            source_ip: caller.source_ip.clone(),
        }
    }
}

/// The pure part of validation: the token's hash against the stored one (constant time), then
/// status, expiry and the revoke-all watermark.
fn verify(token: &SessionToken, read: &ReadResult, now_ms: i64) -> Result<Principal, ServiceError> {
    let user = token.user_id();
    let Some(session) = read.sessions.get(&(user.clone(), token.session_id())) else {
        return Err(ServiceError::InvalidToken);
    };
    let profile = read.profiles.get(user).cloned().unwrap_or_default();
    // Compare before looking at status, so a revoked or expired session is refused in the time a
    // wrong secret is. (An unknown session is refused sooner, before any hashing: its ids are in
    // the token, so the timing tells the caller nothing it did not send.)
    let hash_ok = TokenHash::from_stored(session.token_hash.clone()).matches(&token.hash());
    if !hash_ok || !session.is_active_at(now_ms, profile.watermark.as_ref()) {
        return Err(ServiceError::InvalidToken);
    }
    Ok(Principal { user_id: user.clone(), session: session.clone(), profile })
}

/// Validates a token against the source of truth: one strongly consistent read of the session and
/// the user's profile (with the revoke-all watermark).
#[tracing::instrument(skip_all, fields(user_id = %token.user_id(), session_id = %token.session_id()))]
pub async fn authenticate<S: SessionsStore>(
    store: &S,
    token: &SessionToken,
    now_ms: i64,
) -> Result<Principal, ServiceError> {
    let set = ReadSet {
        sessions: vec![(token.user_id().clone(), token.session_id())],
        profiles: vec![token.user_id().clone()],
        ..Default::default()
    };
    verify(token, &store.read(&set).await?, now_ms)
}

/// The inputs a request brought, as parsed at the edge. A bad one is refused only once the token
/// is known to be good, so every route answers `401` before `400` (and before `404` for a
/// malformed user id): a caller without a valid token learns nothing about its inputs.
pub async fn after_token<S: SessionsStore, T, E: From<ServiceError>>(
    store: &S,
    token: &SessionToken,
    parsed: Result<T, E>,
    now_ms: i64,
) -> Result<T, E> {
    match parsed {
        Ok(inputs) => Ok(inputs),
        Err(refusal) => {
            authenticate(store, token, now_ms).await?;
            Err(refusal)
        }
    }
}

/// Authenticates and authorises in as few reads as it takes: one for self-service (the caller's
/// session and profile, plus `extra` sessions of the caller), two for an admin (then the
/// membership, the target's profile and `extra` sessions of the target).
pub(super) async fn authorize<S: SessionsStore>(
    store: &S,
    token: &SessionToken,
    subject: &Subject,
    extra: Option<SessionId>,
    now_ms: i64,
) -> Result<Authorized, ServiceError> {
    let me = token.user_id().clone();
    match subject {
        Subject::Own => {
            let mut set = ReadSet {
                sessions: vec![(me.clone(), token.session_id())],
                profiles: vec![me.clone()],
                ..Default::default()
            };
            set.sessions.extend(extra.map(|id| (me.clone(), id)));
            let read = store.read(&set).await?;
            let principal = verify(token, &read, now_ms)?;
            if principal.profile.is_sso_linked() {
                return Err(ServiceError::SsoManaged {
                    workspace: principal.profile.workspace_id.as_ref().map(ToString::to_string),
                });
            }
            let target_profile = principal.profile.clone();
            Ok(Authorized { principal, target: me, target_profile, admin: false, read })
        }
        Subject::Member(target) => {
            let principal = authenticate(store, token, now_ms).await?;
            // Every admin route, reads included: an admin's own sessions go through the
            // self-service routes, which keep the current session and refuse SSO-managed accounts.
            if *target == me {
                return Err(ServiceError::Forbidden("Manage your own sessions through /v1/sessions.".into()));
            }
            // Outside the caller's workspace, every user answers alike: not found.
            let workspace = principal.profile.workspace_id.clone().ok_or(ServiceError::NotFound)?;
            let mut set = ReadSet {
                memberships: vec![(workspace.clone(), target.clone())],
                profiles: vec![target.clone()],
                ..Default::default()
            };
            set.sessions.extend(extra.map(|id| (target.clone(), id)));
            let read = store.read(&set).await?;
            if !read.memberships.contains_key(&(workspace.clone(), target.clone())) {
                return Err(ServiceError::NotFound);
            }
            if !principal.profile.is_admin_of(&workspace) {
                return Err(ServiceError::Forbidden("Only workspace admins can manage a member's sessions.".into()));
            }
            let target_profile = read.profiles.get(target).cloned().unwrap_or_default();
            Ok(Authorized { principal, target: target.clone(), target_profile, admin: true, read })
        }
    }
}

pub(super) fn audit_event(
    policy: &Policy,
    target: &UserId,
    revocation: &Revocation,
    scope: AuditScope,
) -> Result<AuditEvent, ServiceError> {
    Ok(AuditEvent {
        event_id: crate::domain::mint_ulid(revocation.at_ms).map_err(internal)?,
        actor: revocation.actor,
        actor_id: revocation.actor_id.clone(),
        target_user: target.clone(),
        scope,
        session_ids: Vec::new(),
        device_labels: Vec::new(),
        count: 0,
        reason: revocation.reason,
        source_ip: revocation.source_ip.clone(),
        note: None,
        at: revocation.at_ms,
        expires_at: revocation.at_ms / 1000 + policy.audit_ttl_secs,
        actor_workspace: None,
        swept_at: None,
    })
}
