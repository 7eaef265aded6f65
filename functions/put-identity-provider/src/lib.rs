//! PUT /v1/internal/workspaces/{workspace_id}/identity-provider: set a workspace's identity provider.
pub mod handler;
pub use handler::handle;
