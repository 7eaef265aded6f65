//! The local SQS (moto's server) does what the retry queue relies on, through `aws-sdk-sqs` (SQS's
//! JSON protocol): per-message `DelaySeconds`, the visibility timeout and
//! `ChangeMessageVisibility`, batches of 10, `MessageGroupId` on a standard queue (stored; moto
//! does not emulate fair queues), and the redrive policy to a dead-letter queue.

use std::time::{Duration, Instant};

use active_sessions::model::ReceiptStep;
use active_sessions::queue::{RetryMessage, RetryQueue};
use integration_tests::TestQueue;

fn message(n: u32) -> RetryMessage {
    let user = active_sessions::domain::UserId::parse("alice").unwrap();
    RetryMessage::new(&user, active_sessions::domain::SessionId::new(), "codex", n, 0, 0, &ReceiptStep::first())
        .unwrap()
}

#[tokio::test]
async fn the_local_sqs_holds_back_hides_batches_and_dead_letters() {
    let q = TestQueue::new(2, 2).await;
    // DelaySeconds: held back, then received, with its group.
    q.queue.send(&message(1), Duration::from_secs(2)).await.unwrap();
    assert_eq!(q.depth().await, (0, 0, 1), "held back");
    assert!(local_stack::sqs::receive(&q.sqs, &q.url, 10, 0).await.unwrap().is_empty());
    let started = Instant::now();
    let got = loop {
        let got = local_stack::sqs::receive(&q.sqs, &q.url, 10, 1).await.unwrap();
        if !got.is_empty() || started.elapsed() > Duration::from_secs(5) {
            break got;
        }
    };
    assert_eq!(got.len(), 1);
    assert!(started.elapsed() >= Duration::from_millis(1_500), "received after {:?}", started.elapsed());
    let attrs = got[0].attributes().unwrap();
    use aws_sdk_sqs::types::MessageSystemAttributeName as A;
    assert_eq!(attrs.get(&A::MessageGroupId).map(String::as_str), Some("codex"));
    assert_eq!(attrs.get(&A::ApproximateReceiveCount).map(String::as_str), Some("1"));
    assert_eq!(RetryMessage::from_body(got[0].body().unwrap()).unwrap().attempt, 1);
    // The visibility timeout hides it; ChangeMessageVisibility shows it again at once.
    assert!(local_stack::sqs::receive(&q.sqs, &q.url, 10, 0).await.unwrap().is_empty(), "in flight");
    q.sqs
        .change_message_visibility()
        .queue_url(&q.url)
        .receipt_handle(got[0].receipt_handle().unwrap())
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    let again = local_stack::sqs::receive(&q.sqs, &q.url, 10, 0).await.unwrap();
    assert_eq!(again.len(), 1, "visible again");
    // Received twice (maxReceiveCount 2): once more, and it is in the dead-letter queue.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert!(local_stack::sqs::receive(&q.sqs, &q.url, 10, 0).await.unwrap().is_empty(), "moved, not received");
    assert_eq!(q.dead_letters().await, 1);
    // Batches of ten: eleven sent, ten received in one call, deleted in one call.
    for n in 0..11 {
        q.queue.send(&message(n + 1), Duration::ZERO).await.unwrap();
    }
    let batch = local_stack::sqs::receive(&q.sqs, &q.url, 10, 0).await.unwrap();
    assert_eq!(batch.len(), 10);
    assert_eq!(local_stack::sqs::delete_done(&q.sqs, &q.url, &batch, &[]).await.unwrap(), 10);
    assert_eq!(local_stack::sqs::receive(&q.sqs, &q.url, 10, 0).await.unwrap().len(), 1);
}
