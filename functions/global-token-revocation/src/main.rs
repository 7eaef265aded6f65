use active_sessions::cache::WriteThrough;
use active_sessions::idp::ProviderKeys;
use active_sessions::runtime;
use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let runtime::Started { config, store } = runtime::start().await?;
    let policy = config.policy;
    let keys = ProviderKeys::from_env()?;
    let caches = WriteThrough::from_env(&config.timeouts).await;
    let (policy, keys, caches) = (&policy, &keys, &caches);
    runtime::run_http(service_fn(move |req: Request| async move {
        Ok::<_, Error>(global_token_revocation::handle_through(store, policy, keys, caches, req).await)
    }))
    .await
}
