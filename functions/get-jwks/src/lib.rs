//! GET /.well-known/jwks.json: the back-channel logout verification keys, public and cacheable.
pub mod handler;
pub use handler::handle;
