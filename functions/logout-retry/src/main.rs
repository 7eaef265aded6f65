use active_sessions::breaker::{BreakerConfig, ProductGuards};
use active_sessions::logout::{Backchannel, RetryPolicy};
use active_sessions::queue::SqsQueue;
use active_sessions::service::Courier;
use active_sessions::telemetry::{self, Trigger};
use active_sessions::{Config, DynamoStore};
use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent, Runtime};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let store = DynamoStore::from_env(config.table_name, &config.timeouts).await;
    let backchannel = Backchannel::load(&config.timeouts).await?;
    let queue = SqsQueue::from_env(&config.timeouts).await?;
    let guards = ProductGuards::new(BreakerConfig::from_env()?);
    let policy = RetryPolicy::from_env()?;
    let courier = Courier { store: &store, queue: &queue, backchannel: &backchannel, guards: &guards, policy: &policy };
    let courier = &courier;
    let handler = service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(logout_retry::handle(courier, event.payload).await.0)
    });
    telemetry::serve(Runtime::new(handler), Trigger::PubSub).await
}
