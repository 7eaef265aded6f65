//! `logout-retry`: the retry queue's consumer. An SQS event source mapping hands it up to ten
//! messages at a time (`ReportBatchItemFailures`); each is one delivery still owed to a product
//! (`queue::RetryMessage`), tried now, then recorded on its receipt (`Courier::retry`: delivered,
//! retried later through a new message, put back while the product's circuit is open, or given
//! up on at the horizon). A stale message (its step done or superseded) is dropped.
//!
//! A message whose outcome could not be recorded (a store or queue error) is reported failed:
//! SQS delivers it again after its visibility timeout, and repeats only what was not recorded. A
//! message that is not one this code writes is logged and reported failed every time, so SQS
//! moves it to the dead-letter queue after `maxReceiveCount` receives; the others are not held.
pub mod handler;
pub use handler::{handle, Tally};
