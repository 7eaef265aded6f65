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

/// The back-channel logout configuration: deployed, from the Secrets Manager secret whose ARN is
/// `BACKCHANNEL_SECRET_ARN` (read once, at start); locally, from the environment. Nothing of
/// the secret's value is ever logged or put in an error.
pub async fn load_backchannel(
    timeouts: &active_sessions::config::StoreTimeouts,
) -> Result<Backchannel, lambda_runtime::Error> {
    let Some(arn) = active_sessions::config::backchannel_secret_arn() else {
        return Ok(Backchannel::from_env()?);
    };
    let raw = active_sessions::config::read_secret("BACKCHANNEL_SECRET_ARN", &arn, timeouts).await?;
    Ok(Backchannel::from_secret_json(&raw)?)
}
