//! Logging: JSON when `AWS_LAMBDA_LOG_FORMAT=JSON`, at the level of `AWS_LAMBDA_LOG_LEVEL` (else
//! `RUST_LOG`, else INFO), as the Lambda runtime's default subscriber does, with one difference:
//! other crates never log below INFO, whatever the level.
//!
//! At DEBUG and TRACE the Lambda runtime logs every raw invocation and response (the
//! `authorization` header, introspection's and sign-in's bodies, a new session's token), the
//! AWS SDK logs request and response bodies (token hashes), and the Redis client logs its
//! commands (cache keys are token hashes). Tokens and their hashes are never logged, so those
//! crates' DEBUG and TRACE events are dropped before any writer sees them. Our own code never
//! logs a token, a hash, a body or a whole event, at any level.

pub mod traces;

pub use traces::Trigger;

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{filter_fn, EnvFilter, LevelFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The crates of this workspace: the only ones that may log below INFO.
const OWN_CRATES: [&str; 16] = [
    "active_sessions",
    "create_session",
    "list_sessions",
    "revoke_session",
    "revoke_all_sessions",
    "update_session",
    "list_session_events",
    "put_user",
    "revocation_fanout",
    "introspect_token",
    "get_revocation",
    "get_jwks",
    "logout_retry",
    "list_members",
    "web",
    "local_stack",
];

/// Whether an event or span may be logged: anything at INFO or above, and below INFO only from
/// this workspace's own crates.
pub fn allowed(metadata: &Metadata<'_>) -> bool {
    *metadata.level() <= Level::INFO || own(metadata)
}

/// Whether it comes from one of this workspace's crates.
fn own(metadata: &Metadata<'_>) -> bool {
    let target = metadata.target();
    OWN_CRATES.iter().any(|own| target.strip_prefix(own).is_some_and(|rest| rest.is_empty() || rest.starts_with("::")))
}

/// Call once at the top of `main`: logs, and traces when `OTEL_EXPORTER_OTLP_ENDPOINT` is set
/// ([`traces`]). Each has its own filter: a span the logs leave out may still be exported.
pub fn init() {
    crate::config::install_crypto_provider();
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").or_else(|_| std::env::var("RUST_LOG"));
    let level = level.as_deref().unwrap_or("INFO").parse::<LevelFilter>().unwrap_or(LevelFilter::INFO);
    let env_filter = EnvFilter::builder().with_default_directive(level.into()).from_env_lossy();
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let fmt = tracing_subscriber::fmt::layer().with_target(false).without_time();
    let fmt = if json { fmt.json().boxed() } else { fmt.boxed() };
    let logs = fmt.with_filter(filter_fn(allowed)).with_filter(env_filter);
    let traces = traces::provider_from_env().map(|provider| {
        traces::layer(&provider).with_filter(filter_fn(move |metadata| traces::exported_at(level, metadata)))
    });
    tracing_subscriber::registry().with(logs).with(traces).init();
}

/// One metric as a CloudWatch Embedded Metric Format line on stdout (Lambda's stdout becomes the
/// log, and CloudWatch extracts the metric from it), in namespace `ActiveSessions`, by function
/// name so that stacks sharing an account (dev, prod) keep their own series. With `product`, the
/// metric is also published per product (`FunctionName`, `Product`).
pub fn emit_metric(name: &str, unit: &str, value: i64, product: Option<&str>) {
    println!("{}", metric_line(crate::env::function_name(), crate::clock::now_ms(), name, unit, value, product));
}

fn metric_line(function: &str, now_ms: i64, name: &str, unit: &str, value: i64, product: Option<&str>) -> String {
    let mut dimensions = vec![serde_json::json!(["FunctionName"])];
    let mut line = serde_json::json!({ "FunctionName": function, name: value });
    if let Some(product) = product {
        dimensions.push(serde_json::json!(["FunctionName", "Product"]));
        line["Product"] = serde_json::json!(product);
    }
    line["_aws"] = serde_json::json!({
        "Timestamp": now_ms,
        "CloudWatchMetrics": [{
            "Namespace": "ActiveSessions",
            "Dimensions": dimensions,
            "Metrics": [{"Name": name, "Unit": unit}]
        }]
    });
    line.to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_metric_line_is_embedded_metric_format() {
        let line = metric_line("fn-1", 1_795_000_000_000, "LogoutDeliveryFailed", "Count", 1, Some("codex"));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["LogoutDeliveryFailed"], 1);
        assert_eq!(v["Product"], "codex");
        assert_eq!(v["FunctionName"], "fn-1");
        let m = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], "ActiveSessions");
        assert_eq!(m["Dimensions"], serde_json::json!([["FunctionName"], ["FunctionName", "Product"]]));
        assert_eq!(m["Metrics"][0]["Name"], "LogoutDeliveryFailed");
        let lag: serde_json::Value =
            serde_json::from_str(&metric_line("f", 1, "PropagationLagMs", "Milliseconds", 420, None)).unwrap();
        assert_eq!(lag["_aws"]["CloudWatchMetrics"][0]["Dimensions"], serde_json::json!([["FunctionName"]]));
        assert!(lag.get("Product").is_none());
    }

    /// Metadata as a callsite would declare it, for the filters' tests.
    pub(super) fn metadata(
        name: &'static str,
        target: &'static str,
        level: tracing::Level,
        fields: &'static [&'static str],
        kind: tracing::metadata::Kind,
    ) -> Metadata<'static> {
        use tracing::callsite::Identifier;
        use tracing::field::FieldSet;
        struct Cs;
        impl tracing::Callsite for Cs {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unimplemented!()
            }
        }
        static CS: Cs = Cs;
        Metadata::new(name, target, level, None, None, None, FieldSet::new(fields, Identifier(&CS)), kind)
    }

    #[test]
    fn other_crates_never_log_below_info() {
        use tracing::metadata::Kind;
        let meta = |target: &'static str, level: Level| metadata("e", target, level, &[], Kind::EVENT);
        assert!(!allowed(&meta("lambda_runtime::layers::api_client", Level::TRACE)));
        assert!(!allowed(&meta("aws_smithy_runtime::client::http", Level::DEBUG)));
        assert!(!allowed(&meta("redis::cmd", Level::TRACE)));
        assert!(!allowed(&meta("active_sessions_fake", Level::TRACE)), "a prefix is not the crate");
        assert!(allowed(&meta("aws_smithy_runtime", Level::WARN)));
        assert!(allowed(&meta("lambda_runtime", Level::INFO)));
        assert!(allowed(&meta("active_sessions::cache", Level::TRACE)));
        assert!(allowed(&meta("introspect_token", Level::DEBUG)));
    }
}
