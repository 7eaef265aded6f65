//! `revocation-fanout`: the DynamoDB Streams consumer.
//!
//! - `classify` turns a stream record into what it means for revocation (pure, unit-tested on
//!   real-shaped fixtures).
//! - `handler` acts on each record and reports only the failed ones, keyed on sequence number.
pub mod classify;
pub mod handler;
pub use handler::handle;
