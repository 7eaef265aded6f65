//! PUT /v1/internal/users/{user_id}: set a user's workspace, role and SSO link.
pub mod handler;
pub use handler::handle;
