//! PATCH /v1/sessions/{id}: change a session's trusted flag.
pub mod handler;
pub use handler::handle;
