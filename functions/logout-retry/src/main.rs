use active_sessions::logout::{Backchannel, RetryPolicy};
use active_sessions::telemetry::{self, Trigger};
use active_sessions::{Config, DynamoStore};
use lambda_runtime::{service_fn, Error, LambdaEvent, Runtime};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let store = DynamoStore::from_env(config.table_name, &config.timeouts).await;
    let backchannel = Backchannel::load(&config.timeouts).await?;
    let policy = RetryPolicy::from_env()?;
    let (store, backchannel, policy) = (&store, &backchannel, &policy);
    let handler = service_fn(move |_: LambdaEvent<serde_json::Value>| async move {
        // The runtime logs a handler's error with `{:?}`: hand it the message only (an SDK
        // error's Debug shows DynamoDB's response).
        let report = logout_retry::handle(store, backchannel, policy).await.map_err(|e| Error::from(e.to_string()))?;
        Ok::<_, Error>(serde_json::to_value(report)?)
    });
    telemetry::serve(Runtime::new(handler), Trigger::Timer).await
}
