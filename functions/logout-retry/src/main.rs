use active_sessions::breaker::{BreakerConfig, ProductGuards};
use active_sessions::logout::{Backchannel, RetryPolicy};
use active_sessions::queue::SqsQueue;
use active_sessions::runtime::{self, Trigger};
use active_sessions::service::Courier;
use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent, Runtime};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let runtime::Started { config, store } = runtime::start().await?;
    // Products and keys are read again every CONFIG_RELOAD_SECONDS; each batch uses one reading,
    // and signs each token when its attempt is made.
    let backchannel = Backchannel::reloadable(&config.timeouts).await?;
    let queue = SqsQueue::from_env(&config.timeouts).await?;
    let guards = ProductGuards::new(BreakerConfig::from_env()?);
    let policy = RetryPolicy::from_env()?;
    let (backchannel, queue, guards, policy) = (&backchannel, &queue, &guards, &policy);
    let handler = service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let backchannel = backchannel.current().await;
        let courier = Courier { store, queue, backchannel: &backchannel, guards, policy };
        Ok::<_, Error>(logout_retry::handle(&courier, event.payload).await.0)
    });
    runtime::serve(Runtime::new(handler), Trigger::PubSub).await
}
