// The stream handler's future (sweep inside the runtime's service) is deeper than the default limit.
#![recursion_limit = "256"]

use active_sessions::breaker::{BreakerConfig, ProductGuards};
use active_sessions::cache::{CacheConfig, TokenCache};
use active_sessions::logout::{Backchannel, RetryPolicy};
use active_sessions::queue::SqsQueue;
use active_sessions::runtime::{self, Trigger};
use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{service_fn, Error, LambdaEvent, Runtime};
use revocation_fanout::handler::Fanout;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let runtime::Started { config, store } = runtime::start().await?;
    let policy = config.policy;
    let cache = TokenCache::new(&CacheConfig::load(&config.timeouts).await?).await?;
    // Products and keys are read again every CONFIG_RELOAD_SECONDS; each batch uses one reading.
    let backchannel = Backchannel::reloadable(&config.timeouts).await?;
    let queue = SqsQueue::from_env(&config.timeouts).await?;
    let guards = ProductGuards::new(BreakerConfig::from_env()?);
    let retry = RetryPolicy::from_env()?;
    let (cache, backchannel, queue, guards, retry) = (&cache, &backchannel, &queue, &guards, &retry);
    let policy = &policy;
    let handler = service_fn(move |event: LambdaEvent<Event>| async move {
        let backchannel = backchannel.current().await;
        let fanout = Fanout { store, policy, cache, backchannel: &backchannel, queue, guards, retry };
        Ok::<_, Error>(revocation_fanout::handle(&fanout, event.payload).await)
    });
    runtime::serve(Runtime::new(handler), Trigger::Datasource).await
}
