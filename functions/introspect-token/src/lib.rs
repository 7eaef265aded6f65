//! `POST /v1/internal/introspect`: RFC 7662 token introspection through the token caches.
pub mod handler;
pub use handler::handle;
