//! The service error: every expected failure of the service has a status and becomes RFC 9457
//! problem+json. What the HTTP edge refuses before the service runs is `http::EdgeRefusal`.
//! Internal causes stay in the `source` chain for logs and never reach a client.

use serde::Serialize;

use crate::store::StoreError;

/// What `Retry-After` says on a `503`: DynamoDB was throttling, stalled or unreachable, and a
/// retry sooner would most likely meet the same.
pub const RETRY_AFTER_SECS: u64 = 2;

/// Where problem `type` URIs live; each problem appends its slug.
pub const PROBLEM_TYPE_BASE: &str = "urn:active-sessions:problem:";

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No session token at all: neither an `Authorization: Bearer` header nor the session cookie.
    #[error("authentication required")]
    MissingToken,
    /// A malformed, unknown, expired or revoked token: all answer alike.
    #[error("invalid token")]
    InvalidToken,
    #[error("not found")]
    NotFound,
    /// Authenticated, but not allowed to do this (the text says why; it is safe to show).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Self-service is off for accounts linked to an organisation's SSO.
    #[error("sessions are managed by the organisation")]
    SsoManaged { workspace: Option<String> },
    #[error("the current session can't be revoked from its own row")]
    CurrentSession,
    #[error("the session is still active")]
    StillActive,
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A signal from a workspace's identity provider that did not authenticate (the text names
    /// the rule it broke, never a value), or was acted on already (its `jti`).
    #[error("identity provider signal refused: {0}")]
    SignalRefused(&'static str),
    /// A signal from a workspace's identity provider that was acted on already (its `jti`).
    #[error("identity provider signal replayed")]
    Replayed,
    #[error("temporarily unavailable")]
    Unavailable(#[source] StoreError),
    /// Something outside the table could not be reached (an identity provider's keys): retry.
    #[error("{0} could not be reached")]
    DependencyUnavailable(&'static str),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<StoreError> for ServiceError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Throttled(_) | StoreError::Conflict | StoreError::Unavailable(_) | StoreError::OutOfTime(_) => {
                Self::Unavailable(err)
            }
            StoreError::Taken(what) => Self::BadRequest(what.into()),
            StoreError::Replayed => Self::Replayed,
            other => Self::Internal(Box::new(other)),
        }
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// `sso-managed` only: the workspace whose admins manage the account's sessions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
}

impl ServiceError {
    pub fn status(&self) -> u16 {
        match self {
            Self::MissingToken | Self::InvalidToken | Self::SignalRefused(_) | Self::Replayed => 401,
            Self::NotFound => 404,
            Self::Forbidden(_) | Self::SsoManaged { .. } => 403,
            Self::CurrentSession | Self::StillActive => 409,
            Self::BadRequest(_) => 400,
            Self::Unavailable(_) | Self::DependencyUnavailable(_) => 503,
            Self::Internal(_) => 500,
        }
    }

    fn slug_and_title(&self) -> (&'static str, &'static str) {
        match self {
            Self::MissingToken => ("authentication-required", "Authentication required"),
            Self::InvalidToken => ("invalid-token", "Invalid token"),
            Self::NotFound => ("not-found", "Not found"),
            Self::Forbidden(_) => ("forbidden", "Forbidden"),
            Self::SsoManaged { .. } => ("sso-managed", "Sessions are managed by your organisation"),
            Self::CurrentSession => ("current-session", "This is your current session"),
            Self::StillActive => ("still-active", "The session is still active"),
            Self::BadRequest(_) => ("bad-request", "Bad request"),
            Self::SignalRefused(_) => ("signal-refused", "The identity provider's token was refused"),
            Self::Replayed => ("signal-replayed", "The identity provider's token was used already"),
            Self::Unavailable(_) | Self::DependencyUnavailable(_) => ("unavailable", "Service temporarily unavailable"),
            Self::Internal(_) => ("internal", "Internal error"),
        }
    }

    /// The client-facing text. Never the internal cause.
    fn detail(&self) -> String {
        match self {
            Self::MissingToken => "Send the session token as `Authorization: Bearer <token>`.".into(),
            Self::InvalidToken => "The session token is invalid, expired or revoked. Sign in again.".into(),
            Self::NotFound => "No such session.".into(),
            Self::Forbidden(detail) => detail.clone(),
            Self::SsoManaged { workspace } => format!(
                "This account signs in through your organisation's single sign-on, so its sessions are managed by the \
                 administrators of workspace {}. Ask them to sign you out.",
                workspace.as_deref().unwrap_or("(unknown)")
            ),
            Self::CurrentSession => {
                "You can't revoke the session you are using. Sign out normally, or log out of all sessions.".into()
            }
            Self::StillActive => "This session has not been revoked, so it has no revocation receipt.".into(),
            Self::BadRequest(detail) => detail.clone(),
            Self::SignalRefused(why) => format!("The identity provider's token was refused: {why}."),
            Self::Replayed => "This token (its jti) was acted on already; sign a new one.".into(),
            Self::Unavailable(_) => "The service is busy. Retry after a short wait.".into(),
            Self::DependencyUnavailable(what) => format!("{what} could not be reached. Retry after a short wait."),
            Self::Internal(_) => "Something went wrong on our side. It has been logged.".into(),
        }
    }

    pub fn problem(&self) -> Problem {
        let (slug, title) = self.slug_and_title();
        let workspace = match self {
            Self::SsoManaged { workspace } => workspace.clone(),
            _ => None,
        };
        Problem {
            kind: format!("{PROBLEM_TYPE_BASE}{slug}"),
            title,
            status: self.status(),
            detail: self.detail(),
            workspace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(ServiceError::MissingToken.status(), 401);
        assert_eq!(ServiceError::InvalidToken.status(), 401);
        assert_eq!(ServiceError::NotFound.status(), 404);
        assert_eq!(ServiceError::Forbidden("x".into()).status(), 403);
        let sso = ServiceError::SsoManaged { workspace: Some("acme".into()) };
        assert_eq!(sso.status(), 403);
        assert!(sso.problem().kind.ends_with("sso-managed"));
        assert!(sso.problem().detail.contains("acme"));
        assert_eq!(ServiceError::CurrentSession.status(), 409);
        assert_eq!(ServiceError::BadRequest("x".into()).status(), 400);
        let throttled = StoreError::Throttled("slow down".into());
        assert_eq!(ServiceError::from(throttled).status(), 503);
        assert_eq!(ServiceError::from(StoreError::AlreadyExists).status(), 500);
    }

    #[test]
    fn internal_text_never_reaches_the_problem() {
        let err = ServiceError::Internal("table arn:aws:dynamodb:secret-table exploded".into());
        let p = err.problem();
        assert_eq!(p.status, 500);
        assert!(!p.detail.contains("secret-table"));
        assert!(p.kind.ends_with("internal"));
    }
}
