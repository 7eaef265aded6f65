//! The operations, over any `SessionStore`. Handlers parse HTTP, call these, and render the result.
//!
//! Every operation acts on a *subject*: the caller's own account (self-service, refused for
//! SSO-linked accounts) or a member of the caller's workspace (admins only; anyone else gets 404
//! for a user outside their workspace and 403 inside it).

use futures::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::Policy;
use crate::cursor::{self, Listing, Position};
use crate::device::Device;
use crate::domain::{AppId, ClientKind, Location, Role, SessionId, UserId, WorkspaceId};
use crate::error::ServiceError;
use crate::model::{
    Actor, AuditEvent, AuditScope, Profile, Revocation, RevokeReason, Session, SessionStatus, Watermark,
};
use crate::store::{Audited, ProfileUpdate, ReadResult, ReadSet, RevokeOutcome, SessionStore, StoreError};
use crate::token::{SessionToken, TokenHash};

pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;
pub const MAX_APPS: usize = 16;
pub const MAX_USER_AGENT_LEN: usize = 1024;
pub const MAX_NOTE_LEN: usize = 200;
/// How many per-session revokes a watermark sweep runs at once.
const SWEEP_CONCURRENCY: usize = 16;
/// Concurrent revoke-alls race on the watermark; each loser combines its own with the winner's.
const WATERMARK_RETRIES: u32 = 5;

pub fn now_ms() -> i64 {
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
}

/// Epoch milliseconds as RFC 3339 (UTC, millisecond precision).
pub fn rfc3339_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn bad(detail: impl Into<String>) -> ServiceError {
    ServiceError::BadRequest(detail.into())
}

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> ServiceError {
    ServiceError::Internal(Box::new(e))
}

// ---------------------------------------------------------------------------------------------
// Who is calling, and on whose sessions.

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
struct Authorized {
    principal: Principal,
    target: UserId,
    target_profile: Profile,
    admin: bool,
    read: ReadResult,
}

impl Authorized {
    fn session(&self, id: SessionId) -> Option<&Session> {
        self.read.sessions.get(&(self.target.clone(), id))
    }

    fn watermark(&self) -> Option<Watermark> {
        self.target_profile.watermark
    }

    fn revocation(&self, caller: &Caller, reason: RevokeReason, at_ms: i64) -> Revocation {
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
    // Compare before looking at status, so every refusal costs the same.
    let hash_ok = TokenHash::from_stored(session.token_hash.clone()).matches(&token.hash());
    if !hash_ok || !session.is_active_at(now_ms, profile.watermark.as_ref()) {
        return Err(ServiceError::InvalidToken);
    }
    Ok(Principal { user_id: user.clone(), session: session.clone(), profile })
}

/// Validates a token against the source of truth: one strongly consistent read of the session and
/// the user's profile (with the revoke-all watermark).
#[tracing::instrument(skip_all, fields(user_id = %token.user_id(), session_id = %token.session_id()))]
pub async fn authenticate<S: SessionStore>(
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

/// Authenticates and authorises in as few reads as it takes: one for self-service (the caller's
/// session and profile, plus `extra` sessions of the caller), two for an admin (then the
/// membership, the target's profile and `extra` sessions of the target).
async fn authorize<S: SessionStore>(
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

fn refuse_own_through_admin(auth: &Authorized) -> Result<(), ServiceError> {
    if auth.admin && auth.target == auth.principal.user_id {
        return Err(ServiceError::Forbidden("Manage your own sessions through /v1/sessions.".into()));
    }
    Ok(())
}

fn audit_event(
    policy: &Policy,
    target: &UserId,
    revocation: &Revocation,
    scope: AuditScope,
) -> Result<AuditEvent, ServiceError> {
    let id = SessionId::generate(revocation.at_ms).map_err(internal)?;
    Ok(AuditEvent {
        event_id: id.ulid(),
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
    })
}

// ---------------------------------------------------------------------------------------------
// Sign-in: create a session (evicting the least recently active one at the limit).

/// The sign-in service's request. Unknown fields are refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    pub user_id: UserId,
    pub apps: Vec<AppId>,
    pub client: ClientKind,
    pub user_agent: String,
    pub ip: String,
    #[serde(default)]
    pub location: Option<Location>,
    #[serde(default)]
    pub trusted: Option<bool>,
    #[serde(default)]
    pub ttl_seconds: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct CreatedSession {
    pub session_id: SessionId,
    /// Shown once; only its hash is stored.
    pub token: String,
    pub expires_at: String,
}

#[tracing::instrument(skip_all, fields(user_id = %input.user_id, client = ?input.client))]
pub async fn create_session<S: SessionStore>(
    store: &S,
    policy: &Policy,
    input: NewSession,
    now_ms: i64,
) -> Result<CreatedSession, ServiceError> {
    let mut apps = input.apps;
    if apps.is_empty() {
        return Err(bad("apps must list at least one first-party app"));
    }
    apps.sort();
    apps.dedup();
    if apps.len() > MAX_APPS {
        return Err(bad(format!("apps may list at most {MAX_APPS} apps")));
    }
    if input.user_agent.len() > MAX_USER_AGENT_LEN || input.user_agent.chars().any(char::is_control) {
        return Err(bad(format!("user_agent must be at most {MAX_USER_AGENT_LEN} printable characters")));
    }
    let ip: std::net::IpAddr = input.ip.trim().parse().map_err(|_| bad("ip must be an IPv4 or IPv6 address"))?;
    let location = input.location.map(Location::validated).transpose().map_err(|e| bad(e.0))?.flatten();
    let ttl = input.ttl_seconds.unwrap_or(policy.session_ttl_secs);
    if !(60..=policy.max_session_ttl_secs).contains(&ttl) {
        return Err(bad(format!("ttl_seconds must be between 60 and {}", policy.max_session_ttl_secs)));
    }

    let session_id = SessionId::generate(now_ms).map_err(internal)?;
    let token = SessionToken::generate(&input.user_id, session_id).map_err(internal)?;
    let session = Session {
        user_id: input.user_id,
        session_id,
        apps,
        client: input.client,
        device: Device::from_user_agent(&input.user_agent, input.client),
        user_agent: input.user_agent,
        ip: ip.to_string(),
        location,
        trusted: input.trusted.unwrap_or(false),
        signed_in_at: now_ms,
        last_active_at: now_ms,
        status: SessionStatus::Active,
        revoked_at: None,
        revoked_by: None,
        revoke_reason: None,
        token_hash: token.hash().as_str().to_owned(),
        expires_at: now_ms / 1000 + ttl,
    };
    store.create_session(&session).await?;
    tracing::info!(session_id = %session_id, "session created");
    // After the write, so a sign-in that fails evicts nothing. A failed eviction leaves the user
    // above the cap until the next sign-in evicts; the sign-in itself has succeeded.
    if let Err(e) = enforce_session_limit(store, policy, &session.user_id, session_id, now_ms).await {
        tracing::warn!(error = %e, "session limit not enforced; the next sign-in will");
    }
    Ok(CreatedSession {
        session_id,
        token: token.expose().to_owned(),
        expires_at: rfc3339_ms(session.expires_at * 1000),
    })
}

/// Above `max_sessions` active sessions, revokes the least recently active ones (reason
/// `session_limit`, by the system) until the cap holds again.
///
/// It runs after the new session `own` is written (so a sign-in that fails evicts nothing), and
/// ranks the sessions it sees the same way every sign-in does: most recently active first, then
/// newest. It keeps the first `max_sessions` and evicts the rest, never its own. Concurrent
/// sign-ins therefore agree on whom to evict and never evict each other's sessions both ways.
/// The bound: a sign-in does not see sessions written after it read, so after a burst of N sign-ins
/// at once up to N - 1 sessions above the cap may remain; the next sign-in evicts them. Evicting
/// twice is harmless: the second revoke finds the session revoked and writes nothing.
async fn enforce_session_limit<S: SessionStore>(
    store: &S,
    policy: &Policy,
    user: &UserId,
    own: SessionId,
    now_ms: i64,
) -> Result<(), ServiceError> {
    let profile_read = ReadSet { profiles: vec![user.clone()], ..Default::default() };
    let (read, states) = tokio::try_join!(store.read(&profile_read), store.session_states(user))?;
    let watermark = read.profiles.get(user).and_then(|p| p.watermark);
    let mut active: Vec<_> = states
        .into_iter()
        .filter(|st| {
            st.active
                && !crate::model::expired(st.expires_at, now_ms)
                && !watermark.is_some_and(|w| w.covers_at(st.signed_in_at, st.session_id))
        })
        .collect();
    active.sort_by_key(|st| std::cmp::Reverse((st.last_active_at, st.session_id)));
    let victims = active.iter().skip(policy.max_sessions as usize).filter(|st| st.session_id != own);
    for st in victims {
        let revocation = Revocation {
            at_ms: now_ms,
            actor: Actor::System,
            actor_id: "system".into(),
            reason: RevokeReason::SessionLimit,
            source_ip: None,
        };
        let mut event = audit_event(policy, user, &revocation, AuditScope::Sessions)?;
        event.session_ids = vec![st.session_id];
        event.device_labels = vec![st.device_label.clone()];
        event.count = 1;
        let audited = Audited { event: &event, signed_in_at: st.signed_in_at };
        let outcome =
            store.revoke_session(user, st.session_id, &revocation, policy.tombstone_secs, Some(audited)).await?;
        tracing::info!(evicted = %st.session_id, ?outcome, "session limit reached");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Listing sessions.

/// A listing's query parameters, as they came.
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    pub limit: Option<String>,
    pub cursor: Option<String>,
    pub include_cli: Option<String>,
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
    fn new(s: &Session, current: bool) -> Self {
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
pub struct SessionListing {
    pub sessions: Vec<SessionView>,
    pub next_cursor: Option<String>,
}

fn parse_limit(raw: Option<&str>) -> Result<u32, ServiceError> {
    match raw {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
            _ => Err(bad(format!("limit must be a whole number from 1 to {MAX_PAGE_SIZE}"))),
        },
    }
}

fn parse_bool(name: &str, raw: Option<&str>) -> Result<bool, ServiceError> {
    match raw {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(bad(format!("{name} must be true or false"))),
    }
}

/// Active first-party sessions of the subject: for self-service the current session first, then
/// newest first. One Query per page; for self-service it runs alongside the token check (nothing
/// is returned unless the token is valid).
#[tracing::instrument(skip_all, fields(user_id = %token.user_id(), subject = ?subject))]
pub async fn list_sessions<S: SessionStore>(
    store: &S,
    token: &SessionToken,
    subject: &Subject,
    query: &ListQuery,
    now_ms: i64,
) -> Result<SessionListing, ServiceError> {
    let limit = parse_limit(query.limit.as_deref())?;
    let include_cli = parse_bool("include_cli", query.include_cli.as_deref())?;
    let owner = match subject {
        Subject::Own => token.user_id().clone(),
        Subject::Member(u) => u.clone(),
    };
    let position = query
        .cursor
        .as_deref()
        .map(|c| cursor::decode(c, &owner, Listing::Sessions))
        .transpose()
        .map_err(|e| bad(e.0))?;
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
    let (auth, page) = if own {
        tokio::try_join!(authorize(store, token, subject, None, now_ms), page)?
    } else {
        let auth = authorize(store, token, subject, None, now_ms).await?;
        (auth, page.await?)
    };

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

// ---------------------------------------------------------------------------------------------
// Revocation.

/// Revokes one session of the subject (never the caller's current one), with its audit event in
/// the same transaction.
#[tracing::instrument(skip_all, fields(user_id = %caller.token.user_id(), subject = ?subject))]
pub async fn revoke_session<S: SessionStore>(
    store: &S,
    policy: &Policy,
    caller: &Caller,
    subject: &Subject,
    target: &str,
    now_ms: i64,
) -> Result<(), ServiceError> {
    let parsed = SessionId::parse(target);
    let auth = authorize(store, &caller.token, subject, parsed.as_ref().ok().copied(), now_ms).await?;
    let target = parsed.map_err(|e| bad(e.0))?;
    refuse_own_through_admin(&auth)?;
    if !auth.admin && target == auth.principal.session.session_id {
        return Err(ServiceError::CurrentSession);
    }
    let Some(session) = auth.session(target) else { return Err(ServiceError::NotFound) };
    if session.status == SessionStatus::Revoked || auth.watermark().is_some_and(|w| w.covers(session)) {
        return Ok(()); // a repeat (revoked, or covered by a revoke-all): nothing to write
    }
    if session.is_expired_at(now_ms) {
        return Err(ServiceError::NotFound);
    }
    let reason = if auth.admin { RevokeReason::AdminRevoke } else { RevokeReason::UserLogout };
    let revocation = auth.revocation(caller, reason, now_ms);
    let mut event = audit_event(policy, &auth.target, &revocation, AuditScope::Sessions)?;
    event.session_ids = vec![target];
    event.device_labels = vec![session.device.label.clone()];
    event.count = 1;
    let audited = Audited { event: &event, signed_in_at: session.signed_in_at };
    match store.revoke_session(&auth.target, target, &revocation, policy.tombstone_secs, Some(audited)).await? {
        RevokeOutcome::Revoked => {
            tracing::info!(target_session = %target, reason = ?reason, "session revoked");
            Ok(())
        }
        RevokeOutcome::AlreadyRevoked => Ok(()),
        RevokeOutcome::NotFound => Err(ServiceError::NotFound),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeScope {
    All,
    Others,
}

impl RevokeScope {
    pub fn parse(raw: Option<&str>) -> Result<Self, ServiceError> {
        match raw {
            None | Some("all") => Ok(Self::All),
            Some("others") => Ok(Self::Others),
            Some(_) => Err(bad("scope must be `all` or `others`")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RevokedCount {
    pub revoked: u64,
}

/// An admin's free-text reason, checked: at most 200 printable characters.
pub fn parse_note(raw: Option<&str>) -> Result<Option<String>, ServiceError> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else { return Ok(None) };
    if raw.chars().count() > MAX_NOTE_LEN || raw.chars().any(char::is_control) {
        return Err(bad(format!("reason must be at most {MAX_NOTE_LEN} printable characters")));
    }
    Ok(Some(raw.to_owned()))
}

/// Revokes all the subject's sessions (or, self-service, all but the current one): counts what
/// it newly covers, then writes the watermark and one audit event (with the count) in one
/// transaction. The per-session soft revokes follow from the watermark's stream record
/// (`sweep_watermark`), so each session still gets its own MODIFY for the fan-out.
///
/// The watermark only ever grows in what it covers: the one written is the union of the one in
/// force and this request's (`Watermark::union`), swapped in only if the one in force is still
/// the one read, so two revoke-alls at once each keep what the other revoked. When nothing active
/// is newly covered (a repeat), nothing is written and the answer is `{"revoked": 0}`.
#[tracing::instrument(skip_all, fields(user_id = %caller.token.user_id(), subject = ?subject))]
pub async fn revoke_all<S: SessionStore>(
    store: &S,
    policy: &Policy,
    caller: &Caller,
    subject: &Subject,
    scope: RevokeScope,
    note: Option<String>,
    now_ms: i64,
) -> Result<RevokedCount, ServiceError> {
    let auth = authorize(store, &caller.token, subject, None, now_ms).await?;
    refuse_own_through_admin(&auth)?;
    let (keep, reason, audit_scope) = match (auth.admin, scope) {
        (true, RevokeScope::All) => (None, RevokeReason::AdminOffboard, AuditScope::All),
        (true, RevokeScope::Others) => return Err(bad("scope=others is for your own sessions")),
        (false, RevokeScope::All) => (None, RevokeReason::UserLogoutAll, AuditScope::All),
        (false, RevokeScope::Others) => {
            (Some(auth.principal.session.session_id), RevokeReason::UserLogoutOthers, AuditScope::Others)
        }
    };
    let revocation = auth.revocation(caller, reason, now_ms);
    let wanted = Watermark { before_ms: now_ms, keep };
    let mut event = audit_event(policy, &auth.target, &revocation, audit_scope)?;
    event.note = note;
    let mut current = auth.watermark();
    for _ in 0..WATERMARK_RETRIES {
        let new = match current {
            None => wanted,
            Some(cur) => {
                let signed_in = kept_signed_in_at(store, &auth, cur.later(wanted).keep).await?;
                cur.union(wanted, signed_in)
            }
        };
        let revoked = if Some(new) == current {
            0
        } else {
            store.count_newly_covered(&auth.target, new, current, now_ms).await?
        };
        if revoked == 0 {
            tracing::info!(scope = ?scope, "revoke-all covers nothing new; nothing written");
            return Ok(RevokedCount { revoked: 0 });
        }
        event.count = revoked;
        match store.swap_watermark(&auth.target, current, new, &revocation, &event).await? {
            Ok(()) => {
                tracing::info!(revoked, scope = ?scope, watermark = new.before_ms, "revoke-all watermark written");
                return Ok(RevokedCount { revoked });
            }
            Err(in_force) => current = in_force,
        }
    }
    Err(StoreError::Conflict.into())
}

/// The sign-in time of a watermark's kept session: the caller's own from what was read, any
/// other (only after a race or a skewed clock) read from the store; `None` if it is gone.
async fn kept_signed_in_at<S: SessionStore>(
    store: &S,
    auth: &Authorized,
    keep: Option<SessionId>,
) -> Result<Option<i64>, ServiceError> {
    let Some(keep) = keep else { return Ok(None) };
    let own = &auth.principal.session;
    if own.session_id == keep && own.user_id == auth.target {
        return Ok(Some(own.signed_in_at));
    }
    let read = store.read(&ReadSet { sessions: vec![(auth.target.clone(), keep)], ..Default::default() }).await?;
    Ok(read.sessions.get(&(auth.target.clone(), keep)).map(|s| s.signed_in_at))
}

/// Soft-revokes every still-active session a watermark covers, so each gets its tombstone and its
/// own stream record. Idempotent: a session revoked already is left as it is. The revoke-all's
/// own audit event covers these; no more are written. Run by the stream consumer on the
/// watermark's MODIFY record.
#[tracing::instrument(skip_all, fields(user_id = %user, watermark = watermark.before_ms))]
pub async fn sweep_watermark<S: SessionStore>(
    store: &S,
    policy: &Policy,
    user: &UserId,
    watermark: Watermark,
    revocation: &Revocation,
) -> Result<u64, StoreError> {
    let states = store.session_states(user).await?;
    let targets = states
        .into_iter()
        .filter(|st| st.active && watermark.covers_at(st.signed_in_at, st.session_id))
        .map(|st| st.session_id);
    let revoked = stream::iter(targets)
        .map(|id| store.revoke_session(user, id, revocation, policy.tombstone_secs, None))
        .buffer_unordered(SWEEP_CONCURRENCY)
        .try_fold(0u64, |n, outcome| async move { Ok(n + u64::from(outcome == RevokeOutcome::Revoked)) })
        .await?;
    tracing::info!(revoked, "watermark swept");
    Ok(revoked)
}

/// Records that TTL removed a still-active session: an audit event by the system, reason
/// `expired`. Its id is derived from the session, so a redelivered record writes nothing new.
pub async fn record_expiry<S: SessionStore>(
    store: &S,
    policy: &Policy,
    user: &UserId,
    session: SessionId,
    device_label: &str,
    expired_at_ms: i64,
) -> Result<(), StoreError> {
    let event = AuditEvent {
        event_id: ulid::Ulid::from_parts(u64::try_from(expired_at_ms).unwrap_or(0), session.ulid().random()),
        actor: Actor::System,
        actor_id: "system".into(),
        target_user: user.clone(),
        scope: AuditScope::Sessions,
        session_ids: vec![session],
        device_labels: vec![device_label.to_owned()],
        count: 1,
        reason: RevokeReason::Expired,
        source_ip: None,
        note: None,
        at: expired_at_ms,
        expires_at: expired_at_ms / 1000 + policy.audit_ttl_secs,
    };
    store.put_audit(&event).await
}

// ---------------------------------------------------------------------------------------------
// Trusted devices.

/// Body of `PATCH /v1/sessions/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionPatch {
    pub trusted: bool,
}

/// Sets the trusted flag of one of the caller's own sessions ("untrust this device" is not "log out").
#[tracing::instrument(skip_all, fields(user_id = %token.user_id()))]
pub async fn set_trusted<S: SessionStore>(
    store: &S,
    token: &SessionToken,
    target: &str,
    patch: SessionPatch,
    now_ms: i64,
) -> Result<SessionView, ServiceError> {
    let parsed = SessionId::parse(target);
    let auth = authorize(store, token, &Subject::Own, None, now_ms).await?;
    let target = parsed.map_err(|e| bad(e.0))?;
    let watermark = auth.watermark();
    match store.set_trusted(&auth.target, target, patch.trusted, now_ms).await? {
        Some(s) if s.is_active_at(now_ms, watermark.as_ref()) => {
            Ok(SessionView::new(&s, s.session_id == auth.principal.session.session_id))
        }
        _ => Err(ServiceError::NotFound),
    }
}

// ---------------------------------------------------------------------------------------------
// The audit trail.

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
    fn new(e: &AuditEvent) -> Self {
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

// ---------------------------------------------------------------------------------------------
// Users (internal).

/// Body of `PUT /v1/internal/users/{user_id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserProfileInput {
    #[serde(default)]
    pub workspace_id: Option<WorkspaceId>,
    #[serde(default)]
    pub role: Option<Role>,
    #[serde(default)]
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
pub async fn put_user<S: SessionStore>(
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
