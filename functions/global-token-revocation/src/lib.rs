//! POST /v1/workspaces/{workspace_id}/global-token-revocation: the workspace's identity provider
//! ends a member's sessions (Global Token Revocation, which Okta's Universal Logout calls).
pub mod handler;
pub use handler::{handle, handle_through};
