//! A workspace's identity provider: its configuration (internal), and what its signals do, which
//! is what an admin's offboarding does: every session of the member it names ends, through the
//! same watermark, audit event and fan-out, with the provider as the actor.

use serde::{Deserialize, Serialize};

use super::auth::audit_event;
use super::bad;
use super::revoke::{write_watermark, RevokedCount};
use crate::config::Policy;
use crate::domain::{UserId, WorkspaceId};
use crate::egress::{Egress, MAX_URL_LEN};
use crate::error::ServiceError;
use crate::identity::{IdentityProvider, SubjectFormat, UserIdentifier};
use crate::model::{Actor, AuditScope, Revocation, RevokeReason, Watermark};
use crate::store::{DirectoryStore, Once, ReadSet, SessionsStore};

/// Body of `PUT /v1/internal/workspaces/{workspace_id}/identity-provider`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderInput {
    pub issuer: String,
    pub jwks_url: String,
    pub audience: String,
    pub subject_format: SubjectFormat,
}

/// A workspace's identity provider, as the configuration route answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderView {
    pub workspace_id: WorkspaceId,
    pub issuer: String,
    pub jwks_url: String,
    pub audience: String,
    pub subject_format: SubjectFormat,
}

fn plain_text(name: &str, value: &str) -> Result<(), ServiceError> {
    if value.trim().is_empty() || value.chars().count() > MAX_URL_LEN || !crate::domain::is_plain_text(value) {
        return Err(bad(format!("{name} must be plain text of 1 to {MAX_URL_LEN} characters")));
    }
    Ok(())
}

/// How long resolving the JWKS URL's host may take when the configuration is set.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Sets a workspace's identity provider. The JWKS URL must be `https` and its host must resolve
/// only to addresses `egress` allows (the fetch checks again, every time); the issuer must be a
/// URL of the same kind; the (issuer, audience) pair must be no other workspace's.
#[tracing::instrument(skip_all, fields(workspace = %workspace))]
pub async fn put_identity_provider<S: DirectoryStore>(
    store: &S,
    workspace: &WorkspaceId,
    input: ProviderInput,
    egress: Egress,
    now_ms: i64,
) -> Result<ProviderView, ServiceError> {
    plain_text("issuer", &input.issuer)?;
    plain_text("audience", &input.audience)?;
    egress.check_url(&input.issuer).map_err(|e| bad(format!("issuer: {e}")))?;
    let (host, port) = egress.check_url(&input.jwks_url).map_err(|e| bad(format!("jwks_url: {e}")))?;
    tokio::time::timeout(RESOLVE_TIMEOUT, egress.resolve(&host, port))
        .await
        .map_err(|_| bad("jwks_url: the host did not resolve in time"))?
        .map_err(|e| bad(format!("jwks_url: {e}")))?;
    let provider = IdentityProvider {
        workspace_id: workspace.clone(),
        issuer: input.issuer,
        jwks_url: input.jwks_url,
        audience: input.audience,
        subject_format: input.subject_format,
        updated_at: now_ms,
    };
    store.put_identity_provider(&provider).await?;
    tracing::info!(format = ?provider.subject_format, "identity provider set");
    Ok(ProviderView {
        workspace_id: provider.workspace_id,
        issuer: provider.issuer,
        jwks_url: provider.jwks_url,
        audience: provider.audience,
        subject_format: provider.subject_format,
    })
}

/// What a provider's signal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalOutcome {
    /// The member's sessions are revoked (`count.notice`: what the token caches must hear).
    Revoked { user: UserId, count: RevokedCount },
    /// No member of the workspace matches: nothing is written, and the provider hears what it
    /// would have heard for a member, so that the answer does not tell who exists.
    NoSuchMember,
}

/// Ends every session of the workspace member `subjects` names (the first identifier of the
/// provider's subject format that names a member), as an offboarding does, with the provider as
/// the actor and `reason`; `once` (the signal's `jti`) is recorded in the same transaction, so a
/// failed revocation leaves the provider free to retry, and a replay is refused (`Replayed`).
/// A subject naming no user at all (opaque, a session only) or no member is `NoSuchMember`;
/// `BadRequest` when it names users only in a format other than the provider's.
#[tracing::instrument(skip_all, fields(workspace = %provider.workspace_id, reason = ?reason))]
pub async fn revoke_for_provider<S: SessionsStore + DirectoryStore>(
    store: &S,
    policy: &Policy,
    provider: &IdentityProvider,
    subjects: &[UserIdentifier],
    reason: RevokeReason,
    once: &Once,
    now_ms: i64,
) -> Result<SignalOutcome, ServiceError> {
    let ws = &provider.workspace_id;
    let nobody = || {
        tracing::info!("signal names no member of this workspace; nothing written");
        crate::telemetry::emit_metric("IdpSignalNoMember", "Count", 1, None);
        Ok(SignalOutcome::NoSuchMember)
    };
    if subjects.is_empty() {
        return nobody();
    }
    let wanted: Vec<&UserIdentifier> = subjects.iter().filter(|s| s.format() == provider.subject_format).collect();
    if wanted.is_empty() {
        let format = match provider.subject_format {
            SubjectFormat::Email => "email",
            SubjectFormat::IssSub => "iss_sub",
        };
        return Err(bad(format!("this workspace's identity provider names users by {format}")));
    }
    for id in wanted {
        // A subject at another issuer is not this provider's to name.
        if matches!(id, UserIdentifier::IssSub { iss, .. } if *iss != provider.issuer) {
            continue;
        }
        let Some(user) = store.user_by_identifier(ws, id).await? else { continue };
        let read = store
            .read(&ReadSet {
                profiles: vec![user.clone()],
                memberships: vec![(ws.clone(), user.clone())],
                ..Default::default()
            })
            .await?;
        // The claim follows the profile's workspace in one transaction; read again to be sure.
        if read.memberships.contains_key(&(ws.clone(), user.clone())) {
            return revoke_member(store, policy, provider, user, &read, reason, once, now_ms).await;
        }
    }
    nobody()
}

#[allow(clippy::too_many_arguments)]
async fn revoke_member<S: SessionsStore>(
    store: &S,
    policy: &Policy,
    provider: &IdentityProvider,
    user: UserId,
    read: &crate::store::ReadResult,
    reason: RevokeReason,
    once: &Once,
    now_ms: i64,
) -> Result<SignalOutcome, ServiceError> {
    let ws = &provider.workspace_id;
    let current = read.profiles.get(&user).and_then(|p| p.watermark);
    let revocation =
        Revocation { at_ms: now_ms, actor: Actor::Idp, actor_id: provider.issuer.clone(), reason, source_ip: None };
    let mut event = audit_event(policy, &user, &revocation, AuditScope::All)?;
    event.actor_workspace = Some(ws.clone());
    let wanted = Watermark { before_ms: now_ms, keep: None };
    let count = write_watermark(store, &user, None, current, wanted, true, &revocation, event, Some(once)).await?;
    tracing::info!(target_user = %user, revoked = count.revoked, "identity provider ended the member's sessions");
    Ok(SignalOutcome::Revoked { user, count })
}

#[cfg(feature = "idp")]
pub use signal::{authenticate_signal, SignalAuthError};

#[cfg(feature = "idp")]
mod signal {
    use std::sync::Arc;

    use crate::domain::WorkspaceId;
    use crate::identity::IdentityProvider;
    use crate::idp::{precheck, verify, Kind, ProviderKeys, Rejection, Verified};
    use crate::store::{DirectoryStore, StoreError};

    /// Why a signal did not authenticate.
    #[derive(Debug, thiserror::Error)]
    pub enum SignalAuthError {
        /// The workspace has no identity provider (or no such workspace).
        #[error("no identity provider is set for this workspace")]
        NoProvider,
        #[error("the token was refused: {0:?}")]
        Rejected(Rejection),
        /// The provider's keys could not be fetched: retry later.
        #[error(transparent)]
        KeysUnavailable(#[from] crate::idp::KeysUnavailable),
        #[error(transparent)]
        Store(#[from] StoreError),
    }

    /// The workspace's provider, and `token` verified as its `kind` of token with its keys
    /// (fetched again, at most once a minute, for a `kid` they lack). What the header alone
    /// decides is checked first, before anything is read or fetched.
    pub async fn authenticate_signal<S: DirectoryStore>(
        store: &S,
        keys: &ProviderKeys,
        workspace: &WorkspaceId,
        token: &str,
        kind: Kind,
        now_secs: i64,
    ) -> Result<(IdentityProvider, Verified), SignalAuthError> {
        if let Err(rejection) = precheck(token, kind) {
            tracing::info!(rejection = ?rejection, "identity provider token refused");
            return Err(SignalAuthError::Rejected(rejection));
        }
        let provider = store.identity_provider(workspace).await?.ok_or(SignalAuthError::NoProvider)?;
        let set: Arc<_> = keys.keys(&provider.jwks_url).await.inspect_err(|e| {
            tracing::warn!(workspace = %workspace, error = %e, "identity provider keys unavailable");
        })?;
        let verified = match verify(token, &provider, &set, kind, now_secs) {
            Err(Rejection::UnknownKey) => match keys.refetch(&provider.jwks_url).await {
                Some(fresh) => verify(token, &provider, &fresh, kind, now_secs),
                None => Err(Rejection::UnknownKey),
            },
            other => other,
        };
        match verified {
            Ok(v) => Ok((provider, v)),
            Err(rejection) => {
                tracing::info!(rejection = ?rejection, "identity provider token refused");
                Err(SignalAuthError::Rejected(rejection))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn a_replay_within_the_same_millisecond_is_still_refused() {
        let store = MemoryStore::new();
        let ws = WorkspaceId::parse("acme").unwrap();
        let provider = IdentityProvider {
            workspace_id: ws.clone(),
            issuer: "https://idp.example".into(),
            jwks_url: "https://idp.example/keys".into(),
            audience: "aud".into(),
            subject_format: SubjectFormat::Email,
            updated_at: 0,
        };
        let ann = UserIdentifier::email("ann@acme.example").unwrap();
        let update = crate::store::ProfileUpdate {
            workspace_id: Some(ws.clone()),
            role: Role::Member,
            sso_linked: false,
            identifiers: vec![ann.clone()],
        };
        store.put_profile(&UserId::parse("ann").unwrap(), &update).await.unwrap();
        let once =
            Once { workspace: ws, issuer: provider.issuer.clone(), jti: "j".into(), keep_until_secs: 9_999_999_999 };
        let (policy, subjects, now) = (Policy::default(), vec![ann], 1_700_000_000_000);
        let first =
            revoke_for_provider(&store, &policy, &provider, &subjects, RevokeReason::IdpLogout, &once, now).await;
        assert!(matches!(first, Ok(SignalOutcome::Revoked { .. })), "{first:?}");
        let again =
            revoke_for_provider(&store, &policy, &provider, &subjects, RevokeReason::IdpLogout, &once, now).await;
        assert!(matches!(again, Err(ServiceError::Replayed)), "{again:?}");
    }
}
