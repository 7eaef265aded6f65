//! The service error: every expected failure has a status and becomes RFC 9457 problem+json.
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
    /// A cookie-authenticated change that did not come from this site's own pages (CSRF).
    #[error("cross-site request refused")]
    CrossSite,
    #[error("the current session can't be revoked from its own row")]
    CurrentSession,
    #[error("the session is still active")]
    StillActive,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("payload too large")]
    PayloadTooLarge { limit: usize },
    #[error("unsupported media type")]
    UnsupportedMediaType { expected: &'static str },
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    /// Not a failure: the early answer to an `OPTIONS` (CORS preflight) request, `204` with `Allow`.
    #[error("preflight")]
    Preflight { allow: &'static str },
    #[error("temporarily unavailable")]
    Unavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<StoreError> for ServiceError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Throttled(_) | StoreError::Conflict | StoreError::Unavailable(_) | StoreError::OutOfTime(_) => {
                Self::Unavailable(err)
            }
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
            Self::MissingToken | Self::InvalidToken => 401,
            Self::NotFound => 404,
            Self::Forbidden(_) | Self::SsoManaged { .. } | Self::CrossSite => 403,
            Self::CurrentSession | Self::StillActive => 409,
            Self::BadRequest(_) => 400,
            Self::PayloadTooLarge { .. } => 413,
            Self::UnsupportedMediaType { .. } => 415,
            Self::MethodNotAllowed { .. } => 405,
            Self::Preflight { .. } => 204,
            Self::Unavailable(_) => 503,
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
            Self::CrossSite => ("cross-site-request", "Cross-site request refused"),
            Self::CurrentSession => ("current-session", "This is your current session"),
            Self::StillActive => ("still-active", "The session is still active"),
            Self::BadRequest(_) => ("bad-request", "Bad request"),
            Self::PayloadTooLarge { .. } => ("payload-too-large", "Payload too large"),
            Self::UnsupportedMediaType { .. } => ("unsupported-media-type", "Unsupported media type"),
            Self::MethodNotAllowed { .. } => ("method-not-allowed", "Method not allowed"),
            Self::Preflight { .. } => ("preflight", "Preflight"),
            Self::Unavailable(_) => ("unavailable", "Service temporarily unavailable"),
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
            Self::CrossSite => "A change made with the session cookie must come from this site's own pages.".into(),
            Self::CurrentSession => {
                "You can't revoke the session you are using. Sign out normally, or log out of all sessions.".into()
            }
            Self::StillActive => "This session has not been revoked, so it has no revocation receipt.".into(),
            Self::BadRequest(detail) => detail.clone(),
            Self::PayloadTooLarge { limit } => format!("The request body is larger than {limit} bytes."),
            Self::UnsupportedMediaType { expected } => format!("Send the body as {expected}."),
            Self::MethodNotAllowed { allow } | Self::Preflight { allow } => format!("This resource allows {allow}."),
            Self::Unavailable(_) => "The service is busy. Retry after a short wait.".into(),
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
        assert_eq!(ServiceError::PayloadTooLarge { limit: 1 }.status(), 413);
        assert_eq!(ServiceError::UnsupportedMediaType { expected: "application/json" }.status(), 415);
        assert_eq!(ServiceError::MethodNotAllowed { allow: "GET" }.status(), 405);
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
