use active_sessions::cache::WriteThrough;
use active_sessions::{telemetry, Config, DynamoStore};
use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let policy = config.policy;
    let store = DynamoStore::from_env(config.table_name, &config.timeouts).await;
    // The cache's secret only (never the back-channel key): the write-through to L2 and the channel.
    let caches = WriteThrough::from_env(&config.timeouts).await;
    let (store, policy, caches) = (&store, &policy, &caches);
    telemetry::run_http(service_fn(move |req: Request| async move {
        Ok::<_, Error>(revoke_all_sessions::handle_through(store, policy, caches, req).await)
    }))
    .await
}
