//! GET /v1/sessions/{id}/revocation (and the admin's member view): a revoked session's receipts.
pub mod handler;
pub use handler::handle;
