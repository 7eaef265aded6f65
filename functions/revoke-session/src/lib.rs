//! `DELETE /v1/sessions/{id}`.
pub mod handler;
pub use handler::{handle, handle_through};
