//! Traces: the spans of this workspace's code and the AWS SDK's calls (one span per DynamoDB
//! operation), exported to X-Ray under the segment Lambda opens for each invocation.
//!
//! - **Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set.** The template sets it to the collector
//!   extension (the ADOT collector layer, `http://localhost:4318`) when `TraceCollectorLayerArn`
//!   is given; the collector sends the spans to X-Ray. Without it nothing is built, and the
//!   SDK's operation spans stay disabled, as before.
//! - **Parent.** Each invocation's root span takes its parent from the invocation's X-Ray header
//!   (`Lambda-Runtime-Trace-Id`, through `XrayPropagator`), so our spans sit under Lambda's own
//!   function segment, and the X-Ray `Sampled` decision holds (`ParentBased`): an invocation
//!   Lambda does not sample records nothing. IDs are X-Ray IDs (`XrayIdGenerator`).
//! - **Flush.** Lambda freezes the process between invocations, so the spans of an invocation are
//!   exported when it ends: lambda_runtime's `OpenTelemetryLayer` calls [`flush`] after the
//!   response is posted (the caller does not wait for it) and before the runtime asks for the
//!   next invocation (the flush counts toward the function's duration). One export is bounded by
//!   500 ms ([`EXPORT_TIMEOUT`]), so a hung collector costs each invocation half a second, not
//!   the SDK's 5 s flush wait.
//! - **What a span may carry** ([`exported_at`]): other crates' DEBUG and TRACE spans never
//!   reach the exporter, and their events never at all (the SDK's events carry request and
//!   response bodies, the runtime's whole events and a failed handler's error), with one
//!   exception: the SDK's per-operation span (`DynamoDB.UpdateItem`, with `rpc.system`,
//!   `rpc.service`, `rpc.method`), whose fields are constants. Our own spans and events follow the
//!   log level; our spans are declared with `skip_all` and name their fields, none a token, a
//!   hash or a body, and an end-to-end test checks everything the functions export.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::task;

use lambda_runtime::layers::OpenTelemetryLayer;
use lambda_runtime::tower::{Layer, Service};
use lambda_runtime::{Error, LambdaInvocation};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_aws::trace::{XrayIdGenerator, XrayPropagator};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::Metadata;
use tracing_subscriber::filter::LevelFilter;

/// The standard OpenTelemetry variable; exporting is on when it is set.
pub const ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// How long one export may take (unless `OTEL_EXPORTER_OTLP_TIMEOUT` says otherwise), and so a
/// flush: the SDK's own default is 10 s, and its flush waits up to 5 s whatever the exporter's
/// timeout. The collector is on localhost; a hung one must not hold every invocation for seconds
/// (introspection's timeout is 5 s).
const EXPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The tracer provider, built once when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (else `None`).
/// Spans are batched on the SDK's own thread and sent with a blocking HTTP client there.
pub(super) fn provider_from_env() -> Option<SdkTracerProvider> {
    std::env::var(ENDPOINT_VAR).ok().filter(|v| !v.trim().is_empty())?;
    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_http();
    if ["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"].iter().all(|v| std::env::var_os(v).is_none())
    {
        builder = builder.with_timeout(EXPORT_TIMEOUT);
    }
    let exporter = match builder.build() {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("traces: no exporter ({e}); spans are not exported");
            return None;
        }
    };
    let resource = Resource::builder()
        .with_detector(Box::new(opentelemetry_aws::detector::LambdaResourceDetector))
        .with_service_name(crate::env::function_name().to_string())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_id_generator(XrayIdGenerator::default())
        .with_resource(resource)
        .build();
    Some(PROVIDER.get_or_init(|| provider).clone())
}

/// The `tracing` layer that turns spans into OpenTelemetry spans for `provider`.
pub(super) fn layer<S>(
    provider: &SdkTracerProvider,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("active-sessions"))
        // Neither the build machine's source paths nor thread names belong in a trace.
        .with_location(false)
        .with_threads(false)
}

/// Whether a span or event may be exported, whatever the level: the spans that may be logged
/// ([`super::allowed`]) and the SDK's per-operation spans, whose fields are the service and
/// operation names; events from this workspace's code only. Other crates' events never become
/// span events: the runtime logs a failed handler's error with `{:?}` (an SDK error's Debug shows
/// the response body) and a payload that does not deserialise with serde's message.
pub fn exported(metadata: &Metadata<'_>) -> bool {
    is_sdk_operation(metadata) || (super::allowed(metadata) && (metadata.is_span() || super::own(metadata)))
}

/// [`exported`], at the log level (`AWS_LAMBDA_LOG_LEVEL`): with INFO, neither our DEBUG events
/// nor anyone's DEBUG spans, except the SDK's per-operation spans.
pub fn exported_at(level: LevelFilter, metadata: &Metadata<'_>) -> bool {
    exported(metadata) && (is_sdk_operation(metadata) || *metadata.level() <= level)
}

pub(super) fn is_sdk_operation(metadata: &Metadata<'_>) -> bool {
    metadata.is_span() && metadata.target().starts_with("aws_sdk_") && metadata.fields().field("rpc.system").is_some()
}

/// Exports what has ended so far; lambda_runtime calls it after every invocation.
pub fn flush() {
    if let Some(provider) = PROVIDER.get() {
        if let Err(e) = provider.force_flush() {
            tracing::warn!(error = %e, "traces: flush failed");
        }
    }
}

/// The OpenTelemetry context of an X-Ray trace header (`Root=1-…;Parent=…;Sampled=1`): the
/// remote parent of the invocation's spans. A header that does not parse gives an empty context.
pub fn xray_parent(header: &str) -> opentelemetry::Context {
    let carrier = HashMap::from([("x-amzn-trace-id".to_string(), header.to_string())]);
    XrayPropagator::default().extract(&carrier)
}

/// How the function is invoked, for the `faas.trigger` attribute (lambda_runtime's own enum:
/// `Http`, `Datasource`, `Timer`, ...).
pub use lambda_runtime::layers::OpenTelemetryFaasTrigger as Trigger;

/// The tower layer of `runtime::serve`: the invocation span.
pub struct Invocations {
    pub trigger: Trigger,
}

impl<S> Layer<S> for Invocations {
    type Service = InvocationService<<OpenTelemetryLayer<fn()> as Layer<S>>::Service>;

    fn layer(&self, inner: S) -> Self::Service {
        let otel = OpenTelemetryLayer::new(flush as fn()).with_trigger(self.trigger);
        InvocationService { inner: otel.layer(inner) }
    }
}

/// The service of [`Invocations`]: the invocation's X-Ray context is the current OpenTelemetry
/// context while the `faas.*` span is created (in `OpenTelemetryService::call`), so that span, the
/// root of ours, is a child of Lambda's segment. It is also the last of ours to end, before the
/// flush: a span around it would end after the flush and reach X-Ray an invocation late, or never.
pub struct InvocationService<S> {
    inner: S,
}

impl<S> Service<LambdaInvocation> for InvocationService<S>
where
    S: Service<LambdaInvocation, Response = (), Error = Error>,
{
    type Response = ();
    type Error = Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut task::Context<'_>) -> task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: LambdaInvocation) -> Self::Future {
        // Without an exporter nothing would use the parent: skip the parsing.
        let _parent = req
            .context
            .xray_trace_id
            .as_deref()
            .filter(|_| PROVIDER.get().is_some())
            .map(|header| xray_parent(header).attach());
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::metadata;
    use super::*;
    use opentelemetry::trace::TraceContextExt;

    #[test]
    fn only_the_sdk_operation_span_is_exported_below_info_from_other_crates() {
        use tracing::metadata::Kind;
        use tracing::Level;
        const OP: &[&str] = &["rpc.service", "rpc.method", "sdk_invocation_id", "rpc.system"];
        let op = OP;
        assert!(exported(&metadata(
            "DynamoDB.UpdateItem",
            "aws_sdk_dynamodb::operation::update_item",
            Level::DEBUG,
            op,
            Kind::SPAN
        )));
        // The SDK's events (request and response bodies at DEBUG/TRACE) and its other spans: no.
        assert!(!exported(&metadata(
            "event",
            "aws_sdk_dynamodb::operation::update_item",
            Level::DEBUG,
            op,
            Kind::EVENT
        )));
        assert!(!exported(&metadata(
            "try_attempt",
            "aws_smithy_runtime::client::orchestrator",
            Level::DEBUG,
            &["attempt"],
            Kind::SPAN
        )));
        assert!(!exported(&metadata("send", "aws_smithy_runtime::client::http", Level::TRACE, &["body"], Kind::EVENT)));
        // A span that only claims `rpc.system` outside the SDK: no.
        assert!(!exported(&metadata("x", "redis::cmd", Level::DEBUG, op, Kind::SPAN)));
        // The runtime's invocation events (the raw event at DEBUG): no; its INFO spans: yes.
        assert!(!exported(&metadata(
            "event",
            "lambda_runtime::layers::api_client",
            Level::DEBUG,
            &["payload"],
            Kind::EVENT
        )));
        assert!(exported(&metadata(
            "Lambda runtime invoke",
            "lambda_runtime::layers::trace",
            Level::INFO,
            &["requestId"],
            Kind::SPAN
        )));
        // Our own code, at any level.
        assert!(exported(&metadata(
            "revoke_session",
            "active_sessions::service::revoke",
            Level::INFO,
            &["user_id"],
            Kind::SPAN
        )));
        assert!(exported(&metadata("answered", "active_sessions::http", Level::DEBUG, &["status"], Kind::EVENT)));
    }

    /// A collector that takes the connection and never answers holds a flush (and with it the
    /// function, after its response, before its next invocation) for the export timeout only.
    #[test]
    fn a_hung_collector_holds_a_flush_for_the_export_timeout_at_most() {
        use opentelemetry::trace::{Span as _, Tracer as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                held.push(stream);
            }
        });
        // Only this test of the crate sets it (edition 2021: no other thread reads it meanwhile).
        std::env::set_var(ENDPOINT_VAR, format!("http://127.0.0.1:{port}"));
        let provider = provider_from_env().expect("a provider");
        provider.tracer("test").start("work").end();
        let started = std::time::Instant::now();
        flush();
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_millis(1500), "a flush took {took:?}");
    }

    #[test]
    fn the_xray_header_is_the_remote_parent() {
        let cx = xray_parent("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1");
        let parent = cx.span().span_context().clone();
        assert!(parent.is_valid() && parent.is_remote() && parent.is_sampled());
        assert_eq!(parent.trace_id().to_string(), "5759e988bd862e3fe1be46a994272793");
        assert_eq!(parent.span_id().to_string(), "53995c3f42cd8ad8");
        let unsampled = xray_parent("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0");
        assert!(!unsampled.span().span_context().is_sampled());
        assert!(!xray_parent("garbage").span().span_context().is_valid());
    }
}
