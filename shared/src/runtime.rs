//! How a function starts and serves: logs and traces first, then the configuration and the
//! store, then the Lambda runtime with an invocation span around each call. An HTTP function that
//! needs only the store and the policy is one call to [`http`]; the others [`start`], wire what
//! they need, then [`run_http`] or [`serve`]. `get-jwks` and `web`, which read no table, call
//! `telemetry::init` themselves and then [`run_http`].

use std::future::Future;

use lambda_http::{Body, Request, Response};
use lambda_runtime::tower::Service;
use lambda_runtime::{Error, LambdaInvocation, Runtime};

use crate::config::{Config, Policy};
use crate::store::DynamoStore;
use crate::telemetry::traces::Invocations;
pub use crate::telemetry::Trigger;

/// What every function starts with, made once per instance and kept for its life.
pub struct Started {
    pub config: Config,
    pub store: &'static DynamoStore,
}

/// Logs and traces (and the process's TLS provider), the configuration (a missing or invalid
/// variable fails the start), and the DynamoDB store.
pub async fn start() -> Result<Started, Error> {
    crate::telemetry::init();
    let config = Config::from_env()?;
    let store = DynamoStore::from_env(config.table_name.clone(), &config.timeouts).await;
    Ok(Started { config, store: Box::leak(Box::new(store)) })
}

/// An HTTP function of the store and the policy: [`start`], then `handle` answers each request.
pub async fn http<F, Fut>(handle: F) -> Result<(), Error>
where
    F: Fn(&'static DynamoStore, &'static Policy, Request) -> Fut + Sync,
    Fut: Future<Output = Response<Body>> + Send,
{
    let Started { config, store } = start().await?;
    let policy: &'static Policy = Box::leak(Box::new(config.policy));
    let handle = &handle;
    run_http(lambda_http::service_fn(
        move |req: Request| async move { Ok::<_, Error>(handle(store, policy, req).await) },
    ))
    .await
}

/// Runs the function's runtime with the invocation span: lambda_runtime's `faas.*` span (with
/// `faas.invocation_id`, the request id, which every log line of the invocation carries too)
/// under the invocation's X-Ray parent; its end flushes the exporter. It takes the place of the
/// request span `lambda_runtime::run` adds.
pub async fn serve<S>(runtime: Runtime<S>, trigger: Trigger) -> Result<(), Error>
where
    S: Service<LambdaInvocation, Response = (), Error = Error>,
{
    runtime.layer(Invocations { trigger }).run().await
}

/// `lambda_http::run`, with the invocation spans of [`serve`].
pub async fn run_http<'a, R, S, E>(handler: S) -> Result<(), Error>
where
    S: Service<lambda_http::Request, Response = R, Error = E>,
    S::Future: Send + 'a,
    R: lambda_http::IntoResponse,
    E: std::fmt::Debug + Into<lambda_runtime::Diagnostic>,
{
    serve(Runtime::new(lambda_http::Adapter::from(handler)), Trigger::Http).await
}
