//! `revocation-fanout`: the DynamoDB Streams consumer.
//!
//! - `classify` turns a stream record into what it means for revocation (pure, unit-tested on
//!   real-shaped fixtures).
//! - `handler` acts on each record and reports only the failed ones, keyed on sequence number.
//! - `load_backchannel` finds the back-channel logout configuration at start.
pub mod classify;
pub mod handler;
pub use handler::handle;

use active_sessions::logout::Backchannel;

/// The back-channel logout configuration (`Backchannel::load`: the secret deployed, the
/// environment locally).
pub async fn load_backchannel(
    timeouts: &active_sessions::config::StoreTimeouts,
) -> Result<Backchannel, lambda_runtime::Error> {
    Ok(Backchannel::load(timeouts).await?)
}
