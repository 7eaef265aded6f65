//! The operations, over any `SessionStore`. Handlers parse HTTP, call these, and render the result.

use futures::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::Policy;
use crate::cursor::{self, Position};
use crate::device::Device;
use crate::domain::{AppId, ClientKind, Location, SessionId, UserId};
use crate::error::ServiceError;
use crate::model::{Revocation, RevokeReason, Session, SessionStatus, Watermark};
use crate::store::{RevokeOutcome, SessionPage, SessionStore, StoreError};
use crate::token::{SessionToken, TokenHash};

pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;
pub const MAX_APPS: usize = 16;
pub const MAX_USER_AGENT_LEN: usize = 1024;
/// How many per-session revokes a watermark sweep runs at once.
const SWEEP_CONCURRENCY: usize = 16;

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

/// The caller: a validated token's session.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: UserId,
    pub session: Session,
    pub watermark: Option<Watermark>,
}

/// Validates a token against the source of truth: one strongly consistent read of the session and
/// the user's revoke-all watermark, then a constant-time hash comparison.
#[tracing::instrument(skip_all, fields(user_id = %token.user_id(), session_id = %token.session_id()))]
pub async fn authenticate<S: SessionStore>(
    store: &S,
    token: &SessionToken,
    now_ms: i64,
) -> Result<Principal, ServiceError> {
    let record = store.load_auth(token.user_id(), token.session_id()).await?;
    let Some(session) = record.session else {
        return Err(ServiceError::InvalidToken);
    };
    // Compare before looking at status, so every refusal costs the same.
    let hash_ok = TokenHash::from_stored(session.token_hash.clone()).matches(&token.hash());
    if !hash_ok || !session.is_active_at(now_ms, record.watermark.as_ref()) {
        return Err(ServiceError::InvalidToken);
    }
    Ok(Principal {
        user_id: token.user_id().clone(),
        session,
        watermark: record.watermark,
    })
}

// ---------------------------------------------------------------------------------------------
// Sign-in: create a session.

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

fn bad(detail: impl Into<String>) -> ServiceError {
    ServiceError::BadRequest(detail.into())
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
    if input.user_agent.len() > MAX_USER_AGENT_LEN || input.user_agent.chars().any(char::is_control)
    {
        return Err(bad(format!(
            "user_agent must be at most {MAX_USER_AGENT_LEN} printable characters"
        )));
    }
    let ip: std::net::IpAddr = input
        .ip
        .trim()
        .parse()
        .map_err(|_| bad("ip must be an IPv4 or IPv6 address"))?;
    let location = input
        .location
        .map(Location::validated)
        .transpose()
        .map_err(|e| bad(e.0))?
        .flatten();
    let ttl = input.ttl_seconds.unwrap_or(policy.session_ttl_secs);
    if !(60..=policy.max_session_ttl_secs).contains(&ttl) {
        return Err(bad(format!(
            "ttl_seconds must be between 60 and {}",
            policy.max_session_ttl_secs
        )));
    }

    let session_id =
        SessionId::generate(now_ms).map_err(|e| ServiceError::Internal(Box::new(e)))?;
    let token = SessionToken::generate(&input.user_id, session_id)
        .map_err(|e| ServiceError::Internal(Box::new(e)))?;
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
    Ok(CreatedSession {
        session_id,
        token: token.expose().to_owned(),
        expires_at: rfc3339_ms(session.expires_at * 1000),
    })
}

// ---------------------------------------------------------------------------------------------
// Listing.

/// The listing's query parameters, as they came.
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
pub struct Listing {
    pub sessions: Vec<SessionView>,
    pub next_cursor: Option<String>,
}

fn parse_limit(raw: Option<&str>) -> Result<u32, ServiceError> {
    match raw {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
            _ => Err(bad(format!(
                "limit must be a whole number from 1 to {MAX_PAGE_SIZE}"
            ))),
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

/// The caller's active first-party sessions: the current one first, then newest first. One
/// Query per page, run alongside the token check (nothing is returned unless the token is valid).
#[tracing::instrument(skip_all, fields(user_id = %token.user_id()))]
pub async fn list_sessions<S: SessionStore>(
    store: &S,
    token: &SessionToken,
    query: &ListQuery,
    now_ms: i64,
) -> Result<Listing, ServiceError> {
    let limit = parse_limit(query.limit.as_deref())?;
    let include_cli = parse_bool("include_cli", query.include_cli.as_deref())?;
    let user = token.user_id();
    let position = query
        .cursor
        .as_deref()
        .map(|c| cursor::decode(c, user))
        .transpose()
        .map_err(|e| bad(e.0))?;
    let first_page = position.is_none();
    // The first page shows the current session in its first slot.
    let query_limit = if first_page { limit - 1 } else { limit };
    let after = match position {
        Some(Position::After(id)) => Some(id),
        _ => None,
    };
    let page = async {
        if query_limit == 0 {
            return Ok(None);
        }
        store
            .query_sessions(user, after, query_limit)
            .await
            .map(Some)
            .map_err(ServiceError::from)
    };
    let (principal, page) = tokio::try_join!(authenticate(store, token, now_ms), page)?;

    let current = &principal.session;
    let listed = |s: &Session| {
        s.client.is_listed(include_cli) && s.is_active_at(now_ms, principal.watermark.as_ref())
    };
    let mut sessions = Vec::with_capacity(limit as usize);
    if first_page && listed(current) {
        sessions.push(SessionView::new(current, true));
    }
    let next_cursor = match page {
        None => Some(cursor::encode(user, Position::Top)),
        Some(SessionPage {
            sessions: items,
            last_evaluated,
        }) => {
            sessions.extend(
                items
                    .iter()
                    .filter(|s| s.session_id != current.session_id && listed(s))
                    .map(|s| SessionView::new(s, false)),
            );
            last_evaluated.map(|id| cursor::encode(user, Position::After(id)))
        }
    };
    Ok(Listing {
        sessions,
        next_cursor,
    })
}

// ---------------------------------------------------------------------------------------------
// Revocation.

fn user_actor(user: &UserId) -> String {
    format!("user:{user}")
}

/// Revokes one of the caller's sessions (never the current one).
#[tracing::instrument(skip_all, fields(user_id = %token.user_id()))]
pub async fn revoke_session<S: SessionStore>(
    store: &S,
    policy: &Policy,
    token: &SessionToken,
    target: &str,
    now_ms: i64,
) -> Result<(), ServiceError> {
    let principal = authenticate(store, token, now_ms).await?;
    let target = SessionId::parse(target).map_err(|e| bad(e.0))?;
    if target == principal.session.session_id {
        return Err(ServiceError::CurrentSession);
    }
    let revocation = Revocation {
        at_ms: now_ms,
        by: user_actor(&principal.user_id),
        reason: RevokeReason::UserLogout,
    };
    match store
        .revoke_session(
            &principal.user_id,
            target,
            &revocation,
            policy.tombstone_secs,
        )
        .await?
    {
        RevokeOutcome::Revoked(_) => {
            tracing::info!(target_session = %target, "session revoked");
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

/// Revokes all the caller's sessions (or all but the current one). The critical path is one
/// watermark write, with the count read alongside it: it does not grow with the number of
/// sessions. The per-session soft revokes follow from the watermark's stream record
/// (`sweep_watermark`), so each session still gets its own MODIFY for the fan-out.
#[tracing::instrument(skip_all, fields(user_id = %token.user_id()))]
pub async fn revoke_all<S: SessionStore>(
    store: &S,
    token: &SessionToken,
    scope: RevokeScope,
    now_ms: i64,
) -> Result<RevokedCount, ServiceError> {
    let principal = authenticate(store, token, now_ms).await?;
    let (keep, reason) = match scope {
        RevokeScope::All => (None, RevokeReason::UserLogoutAll),
        RevokeScope::Others => (
            Some(principal.session.session_id),
            RevokeReason::UserLogoutOthers,
        ),
    };
    let revocation = Revocation {
        at_ms: now_ms,
        by: user_actor(&principal.user_id),
        reason,
    };
    let wanted = Watermark {
        before_ms: now_ms,
        keep,
    };
    // The watermark write and the count run side by side; neither depends on the other.
    let (in_force, revoked) = tokio::try_join!(
        store.raise_watermark(&principal.user_id, wanted, &revocation),
        store.count_newly_covered(&principal.user_id, wanted, principal.watermark, now_ms),
    )?;
    tracing::info!(revoked, scope = ?scope, watermark = in_force.before_ms, "revoke-all watermark written");
    Ok(RevokedCount { revoked })
}

/// Soft-revokes every still-active session a watermark covers, so each gets its tombstone and its
/// own stream record. Idempotent: a session revoked already is left as it is. Run by the stream
/// consumer on the watermark's MODIFY record.
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
        .map(|id| store.revoke_session(user, id, revocation, policy.tombstone_secs))
        .buffer_unordered(SWEEP_CONCURRENCY)
        .try_fold(0u64, |n, outcome| async move {
            Ok(n + u64::from(matches!(outcome, RevokeOutcome::Revoked(_))))
        })
        .await?;
    tracing::info!(revoked, "watermark swept");
    Ok(revoked)
}
