//! Trusted devices: "untrust this device" without logging it out.

use serde::Deserialize;

use super::auth::{authorize, Subject};
use super::views::SessionView;
use crate::domain::SessionId;
use crate::error::ServiceError;
use crate::store::SessionsStore;
use crate::token::SessionToken;

/// Body of `PATCH /v1/sessions/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionPatch {
    pub trusted: bool,
}

/// Sets the trusted flag of one of the caller's own sessions ("untrust this device" is not "log out").
#[tracing::instrument(skip_all, fields(user_id = %token.user_id()))]
pub async fn set_trusted<S: SessionsStore>(
    store: &S,
    token: &SessionToken,
    target: SessionId,
    patch: SessionPatch,
    now_ms: i64,
) -> Result<SessionView, ServiceError> {
    let auth = authorize(store, token, &Subject::Own, None, now_ms).await?;
    let watermark = auth.watermark();
    match store.set_trusted(&auth.target, target, patch.trusted, now_ms).await? {
        Some(s) if s.is_active_at(now_ms, watermark.as_ref()) => {
            Ok(SessionView::new(&s, s.session_id == auth.principal.session.session_id))
        }
        _ => Err(ServiceError::NotFound),
    }
}
