//! Local stack helpers shared by the binaries (`local-setup`, `stream-poller`,
//! `backchannel-receiver`) and the tests.
//!
//! - `stream`: a DynamoDB Streams record in the shape Lambda delivers it.
//! - `gateway`: the local API Gateway in front of `cargo lambda watch` (`local-gateway`).
//! - `filter`: the event source mapping's filter criteria, read from `template.yaml`, applied as
//!   Lambda applies them, so the local fan-out sees exactly the records the deployed one sees.
//! - `idp`: a stand-in identity provider (its JWKS, and the requests it signs).
//! - `sqs`: the SQS event source mapping of `logout-retry`, played locally.
pub mod filter;
pub mod gateway;
pub mod idp;
pub mod sqs;
pub mod stream;
