//! Helpers for the integration tests: a fresh table on DynamoDB Local per test (the way
//! zero-to-production's `spawn_app()` gives each test its own database), raw item access, the
//! table's stream, and the base URL of the `cargo lambda watch` under test.
//!
//! `infra/test.sh` starts DynamoDB Local and `cargo lambda watch` and sets the environment. A test
//! run without them fails loudly; nothing here skips.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

mod bench;
mod caches;
mod products;
mod repo;
mod servers;
mod table;

pub use bench::*;
pub use caches::*;
pub use products::*;
pub use repo::*;
pub use servers::*;
pub use table::*;

pub type Item = HashMap<String, AttributeValue>;

#[cfg(test)]
mod tests {
    #[test]
    fn response_keys_quoted_or_not_are_statuses() {
        let op: yaml_serde::Value =
            yaml_serde::from_str("responses:\n  \"200\": {}\n  404: {}\n  default: {}\n").unwrap();
        assert_eq!(super::statuses(&op).into_iter().collect::<Vec<_>>(), vec![200, 404]);
    }

    #[test]
    #[should_panic(expected = "is not a status")]
    fn a_key_that_is_no_status_is_refused() {
        let op: yaml_serde::Value = yaml_serde::from_str("responses:\n  ok: {}\n").unwrap();
        super::statuses(&op);
    }
}
