//! `DELETE /v1/sessions[?scope=others]`.
pub mod handler;
pub use handler::{handle, handle_through};
