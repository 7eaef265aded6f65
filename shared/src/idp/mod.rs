//! Signals from a workspace's identity provider: the JWTs it signs (Global Token Revocation's
//! bearer token, Shared Signals' Security Event Tokens) verified against its published keys.
//!
//! - `verify`: the rules, as a pure function of the token, the provider, its keys and the time
//!   (`precheck`: those the header alone decides, before anything is read or fetched).
//! - `keys`: the provider's JWKS, fetched only from addresses its egress allows, cached on a TTL
//!   (`reload::Reloadable`), and fetched again for an unknown `kid` at most once a minute.

mod keys;
mod verify;

pub use keys::{KeysUnavailable, ProviderKeys, REFETCH_INTERVAL};
pub use verify::{precheck, verify, Kind, Rejection, Verified, MAX_LIFETIME_SECS, SET_MAX_AGE_SECS, SKEW_SECS};
