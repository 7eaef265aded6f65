//! `POST /v1/internal/sessions`.
pub mod handler;
pub use handler::handle;
