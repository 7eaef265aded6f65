use active_sessions::cache::WriteThrough;
use active_sessions::runtime;
use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let runtime::Started { config, store } = runtime::start().await?;
    let policy = config.policy;
    // The cache's secret only (never the back-channel key): the write-through to L2 and the channel.
    let caches = WriteThrough::from_env(&config.timeouts).await;
    let (policy, caches) = (&policy, &caches);
    runtime::run_http(service_fn(move |req: Request| async move {
        Ok::<_, Error>(revoke_all_sessions::handle_through(store, policy, caches, req).await)
    }))
    .await
}
