//! POST /v1/workspaces/{workspace_id}/ssf/events: the Shared Signals push receiver (RFC 8935)
//! for the workspace's identity provider. CAEP `session-revoked`, `credential-change` (revoke,
//! delete) and RISC `account-disabled` end the member's sessions.
pub mod handler;
pub use handler::{handle, handle_through};
