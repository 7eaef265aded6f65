//! GET /v1/sessions/events and GET /v1/admin/users/{user_id}/events: the revocation audit trail.
pub mod handler;
pub use handler::handle;
