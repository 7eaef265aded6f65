//! `GET /v1/sessions`.
pub mod handler;
pub use handler::handle;
