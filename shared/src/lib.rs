//! Active Sessions: the library every function uses.
//!
//! - `domain`: newtypes parsed once at the edge; `token`: session tokens and their hashes;
//!   `clock`: now. The layers, checked by `infra/layers.py`: domain; model, keys, token, cursor,
//!   device, clock; store, cache, logout, telemetry, config and the rest; service; http, testing.
//! - `keys`: the only place table keys are built; `model`: records and the rules over them.
//! - `store`: the storage trait, its DynamoDB implementation and (feature `test-utils`) an
//!   in-memory one; `table`: the table definition.
//! - `service`: the operations; `http`: the HTTP edge; `error`: errors → problem+json.

#[cfg(feature = "backchannel")]
pub mod breaker;
#[cfg(feature = "cache")]
pub mod cache;
pub mod clock;
pub mod config;
pub mod cursor;
pub mod device;
pub mod domain;
pub mod egress;
pub mod env;
pub mod error;
pub mod http;
pub mod identity;
#[cfg(feature = "idp")]
pub mod idp;
pub mod jwks;
pub mod keys;
#[cfg(feature = "backchannel")]
pub mod logout;
pub mod model;
#[cfg(feature = "backchannel")]
pub mod queue;
pub mod reload;
pub mod runtime;
pub mod service;
pub mod store;
pub mod table;
pub mod telemetry;
#[cfg(any(test, feature = "test-utils"))]
pub mod testing;
pub mod token;

pub use config::{Config, Policy};
pub use error::ServiceError;
pub use store::{DynamoStore, SessionStore, StoreError};
