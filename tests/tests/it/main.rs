//! The integration and end-to-end tests, one test binary (each binary links the AWS SDK, so one
//! is faster to build than nine). `cache_tls.rs` stays its own binary: it sets `SSL_CERT_FILE`,
//! which is process-wide.

mod contract;
mod delivery;
mod dynamo;
mod e2e;
mod fanout;
mod faults;
mod governance;
mod idp;
mod integrity;
mod model;
mod reload;
mod security;
mod sqs;
mod template;
mod writethrough;
