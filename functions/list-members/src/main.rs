use active_sessions::{telemetry, Config, DynamoStore};
use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let store = DynamoStore::from_env(config.table_name, &config.timeouts).await;
    let store = &store;
    telemetry::run_http(service_fn(move |req: Request| async move {
        Ok::<_, Error>(list_members::handle(store, req).await)
    }))
    .await
}
