//! The operations, over any `SessionStore`. Handlers parse HTTP, call these, and render the result.
//!
//! Every operation acts on a *subject*: the caller's own account (self-service, refused for
//! SSO-linked accounts) or a member of the caller's workspace (admins only; anyone else gets 404
//! for a user outside their workspace and 403 inside it).
//!
//! One module per operation: `auth` (who is calling, on whose sessions), `sign_in` (with the
//! session cap), `list`, `revoke` (one, all, the sweep, expiry), `revocation` (its receipts),
//! `trust`, `events`, `users`, `delivery` (back-channel logout, its receipts and retries),
//! `introspect` (RFC 7662 for products, with its bookkeeping), and `views` (what they answer).

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::ServiceError;

mod auth;
#[cfg(feature = "backchannel")]
mod delivery;
mod events;
mod idp;
#[cfg(feature = "cache")]
mod introspect;
mod list;
mod members;
mod revocation;
mod revoke;
#[cfg(feature = "sign-in")]
mod sign_in;
mod trust;
mod users;
#[cfg(feature = "cache")]
mod validate;
mod views;

pub use auth::{after_token, authenticate, Caller, Principal, Subject};
#[cfg(feature = "backchannel")]
pub use delivery::{Attempt, Courier, DeliveryError};
pub use events::{list_events, EventListing};
#[cfg(feature = "idp")]
pub use idp::{authenticate_signal, SignalAuthError};
pub use idp::{put_identity_provider, revoke_for_provider, ProviderInput, ProviderView, SignalOutcome};
#[cfg(feature = "cache")]
pub use introspect::{introspect, ActivityTracker, Introspection, IntrospectionRequest};
pub use list::{list_sessions, ListQuery, SessionListing};
pub use members::{list_members, MemberListing, MemberView, MembersQuery};
pub use revocation::{revocation, ProductReceiptView, RevocationView, RevokedByView};
pub use revoke::{parse_note, record_expiry, revoke_all, revoke_session, sweep_watermark, RevokeScope, RevokedCount};
#[cfg(feature = "sign-in")]
pub use sign_in::{create_session, NewSession};
pub use trust::{set_trusted, SessionPatch};
pub use users::{put_user, IdpSubject, UserProfileInput, UserProfileView};
#[cfg(feature = "cache")]
pub use validate::validate;
pub use views::{ActorView, CreatedSession, EventSessionView, EventView, ReceiptSummary, SessionView};

pub use crate::clock::now_ms;
pub use crate::model::MAX_APPS;
pub const MAX_USER_AGENT_LEN: usize = 1024;
pub const MAX_NOTE_LEN: usize = 200;
/// How many per-session revokes a watermark sweep runs at once.
const SWEEP_CONCURRENCY: usize = 16;
/// Concurrent revoke-alls race on the watermark; each loser combines its own with the winner's.
const WATERMARK_RETRIES: u32 = 5;

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
