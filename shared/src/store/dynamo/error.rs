//! SDK and transaction errors as `StoreError`, the SDK error kept as the source.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::CancellationReason;

use crate::store::StoreError;

use super::Item;

/// An SDK error (or an operation's own error) as a `StoreError`, keeping it as the source.
pub(super) fn sdk_error<E>(err: E) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let throttled = matches!(
        err.code(),
        Some("ThrottlingException" | "ProvisionedThroughputExceededException" | "RequestLimitExceeded")
    );
    if throttled {
        StoreError::Throttled(Box::new(err))
    } else {
        StoreError::Sdk(Box::new(err))
    }
}

/// A failed `send()`: no answer in time, or no connection (after the SDK's bounded retries), is
/// `Unavailable`; anything else is mapped as `sdk_error` does.
pub(super) fn send_error<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => StoreError::Unavailable(Box::new(err)),
        other => sdk_error(other),
    }
}
pub(super) fn build_error(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Sdk(Box::new(e))
}

/// Whether the transaction's item at `index` failed its condition, and if so the item as it was.
pub(super) fn failed_condition(reasons: &[CancellationReason], index: usize) -> Option<Option<Item>> {
    let reason = reasons.get(index)?;
    (reason.code() == Some("ConditionalCheckFailed")).then(|| reason.item().cloned())
}
