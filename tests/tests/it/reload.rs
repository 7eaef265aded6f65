//! The back-channel configuration reloads on a TTL. Two fan-out instances, one that loaded the
//! secret before a product was added and one after, both give the new product its receipt and its
//! logout within one TTL.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use active_sessions::domain::{ClientKind, UserId};
use active_sessions::logout::{Backchannel, RetryPolicy};
use active_sessions::model::DeliveryStatus;
use active_sessions::reload::Reloadable;
use active_sessions::service::{self, Caller, Subject};
use active_sessions::store::ReceiptsStore;
use active_sessions::testing::sign_in;
use active_sessions::token::SessionToken;
use active_sessions::Policy;
use integration_tests::{Delivery, StandInProduct, TestTable};

/// The secret as Secrets Manager would hold it: the products the test names, one key.
fn secret(products: &[(&str, &str)]) -> String {
    let endpoints: Vec<serde_json::Value> =
        products.iter().map(|(aud, url)| serde_json::json!({"aud": aud, "url": url})).collect();
    serde_json::json!({
        "endpoints": endpoints,
        "issuer": "http://127.0.0.1",
        "signing_key_pem": integration_tests::TEST_SIGNING_KEY,
        "key_id": "test-1",
    })
    .to_string()
}

/// An instance's reloadable configuration, read from `source` as the deployed one is read from
/// the secret.
async fn instance(source: &Arc<Mutex<String>>, ttl: Duration) -> Reloadable<Backchannel> {
    let source = Arc::clone(source);
    Reloadable::load("backchannel", ttl, move || {
        let raw = source.lock().unwrap().clone();
        async move { Backchannel::from_secret_json(&raw) }
    })
    .await
    .unwrap()
}

/// Revokes one more of alice's sessions; its id.
async fn revoke(t: &TestTable) -> active_sessions::domain::SessionId {
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let phone = sign_in(&t.store, "alice", ClientKind::MobileApp).await;
    let caller = Caller { token: SessionToken::parse(&me.token).unwrap(), source_ip: None };
    service::revoke_session(&t.store, &Policy::default(), &caller, &Subject::Own, phone.session_id, service::now_ms())
        .await
        .unwrap();
    phone.session_id
}

#[tokio::test]
async fn a_product_added_to_the_secret_is_told_by_every_instance_within_one_ttl() {
    const TTL: Duration = Duration::from_secs(1);
    let t = TestTable::new().await;
    let (codex, chatgpt) =
        (StandInProduct::start(Duration::ZERO, 0).await, StandInProduct::start(Duration::ZERO, 0).await);
    let source = Arc::new(Mutex::new(secret(&[("codex", &codex.url)])));
    let before = instance(&source, TTL).await;
    *source.lock().unwrap() = secret(&[("codex", &codex.url), ("chatgpt", &chatgpt.url)]);
    let after = instance(&source, TTL).await;
    tokio::time::sleep(TTL + Duration::from_millis(100)).await;

    let retry = RetryPolicy {
        horizon_ms: 3_600_000,
        backoff_ms: 1_000,
        max_backoff_ms: 2_000,
        inline_budget: Duration::from_millis(1_000),
    };
    let d = Delivery::new(&[], retry).await;
    let alice = UserId::parse("alice").unwrap();
    for (name, config) in [("loaded before", &before), ("loaded after", &after)] {
        let seen = t.lambda_stream_records().await.len();
        let session = revoke(&t).await;
        let backchannel = config.current().await;
        let fanout = revocation_fanout::handler::Fanout { backchannel: &backchannel, ..d.fanout(&t.store) };
        let mut records = t.lambda_stream_records().await;
        records.drain(..seen.min(records.len()));
        let event = serde_json::from_value(serde_json::json!({ "Records": records })).unwrap();
        assert!(revocation_fanout::handle(&fanout, event).await.batch_item_failures.is_empty(), "{name}");
        let receipts = t.store.receipts(&alice, session).await.unwrap();
        let chatgpt_receipt = receipts.get("chatgpt").map(|r| r.status);
        assert_eq!(
            chatgpt_receipt,
            Some(DeliveryStatus::Delivered),
            "the instance {name} the product was added: {receipts:?}"
        );
    }
    assert_eq!(chatgpt.received().len(), 2, "both instances told the new product");
    assert_eq!(codex.received().len(), 2);
}

/// A third throwaway P-256 key (the tests' own key is the first; `logout.rs`'s tests hold others).
const SECOND_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgNEv0X9hFvGEUgAF8
VImcX9XZUo5M5gA5m3lxmnpIUKehRANCAAQgkLVRTBo6bUc8FK7p/hDr9N7cbj9k
3uaYPdPlJ/mJvBEbR8hkaVZqwK4ZXxlwieLyHKfzcCqxYi0diCTPazwK
-----END PRIVATE KEY-----";
const THIRD_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgi56nWkT8J6UkcCrc
61qltxIbly9qL9W2YJTnMCokXK6hRANCAAQD+HBgCxN6T6HPWOMkTT6XwGNAnqQ+
E3s5rko2pB+vcAMpcu2BngpR831+7i/CAuGKxYmZl23F09VYSnRJIguw
-----END PRIVATE KEY-----";

/// Verifies a logout token as a product must: the key its `kid` names in the JWKS it fetched.
fn verifies(token: &str, jwks: &jsonwebtoken::jwk::JwkSet) -> bool {
    use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
    let Some(kid) = decode_header(token).ok().and_then(|h| h.kid) else { return false };
    let Some(jwk) = jwks.find(&kid) else { return false };
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&["codex"]);
    v.set_issuer(&["http://127.0.0.1"]);
    decode::<serde_json::Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v).is_ok()
}

/// A rotation while deliveries are in flight. One instance still on the generation before the
/// promotion (it signs with k1), one on the generation after (k2 signs, k1 is the previous key, k3
/// the next). The product fetched the JWKS after the rotation, from what `rotate jwks` published
/// for get-jwks, and verifies every token against it.
#[tokio::test]
async fn a_rotation_while_deliveries_are_in_flight_loses_none() {
    let product = StandInProduct::start(Duration::ZERO, 0).await;
    let now = service::now_ms() / 1000;
    let endpoints = serde_json::json!([{ "aud": "codex", "url": product.url }]);
    // Before: k1 signs; k2 has been published as the next key for two hours.
    let before = serde_json::json!({
        "endpoints": endpoints, "issuer": "http://127.0.0.1",
        "signing_key_pem": integration_tests::TEST_SIGNING_KEY, "key_id": "k1",
        "next_signing_key_pem": SECOND_KEY, "next_key_id": "k2", "next_since": now - 7_200,
    });
    let k1 =
        serde_json::to_value(&active_sessions::logout::public_jwks_of_secret(&before.to_string()).unwrap().keys[0])
            .unwrap();
    // After the promotion: k2 signs since now, k1 stays published as the previous key, k3 is next.
    let after = serde_json::json!({
        "endpoints": endpoints, "issuer": "http://127.0.0.1",
        "signing_key_pem": SECOND_KEY, "key_id": "k2", "key_since": now, "key_published_since": now - 7_200,
        "previous_key": k1,
        "next_signing_key_pem": THIRD_KEY, "next_key_id": "k3", "next_since": now,
    });
    let old = Backchannel::from_secret_json(&before.to_string()).unwrap();
    let new = Backchannel::from_secret_json(&after.to_string()).unwrap();
    let alice = UserId::parse("alice").unwrap();
    let deliveries = (0..10).map(|i| {
        let instance = if i % 2 == 0 { &old } else { &new };
        let alice = &alice;
        async move {
            instance.deliver_one("codex", alice, active_sessions::domain::SessionId::new(), service::now_ms()).await
        }
    });
    for outcome in futures::future::join_all(deliveries).await {
        outcome.expect("delivered");
    }
    let published = active_sessions::logout::public_jwks_of_secret(&after.to_string()).unwrap();
    let served = active_sessions::jwks::PublishedJwks::parse(&serde_json::to_string(&published).unwrap(), "T").unwrap();
    assert_eq!(served.kids(), ["k1", "k2", "k3"], "previous, current and next");
    let fetched: jsonwebtoken::jwk::JwkSet = serde_json::from_str(served.body()).unwrap();
    let received = product.received();
    assert_eq!(received.len(), 10);
    for r in &received {
        assert!(verifies(&r.token, &fetched), "a product refused a token of {}", r.sid);
    }
    // A set of the current and next keys alone leaves the old instance's five tokens unverifiable.
    let two_keys = jsonwebtoken::jwk::JwkSet {
        keys: fetched.keys.iter().filter(|k| k.common.key_id.as_deref() != Some("k1")).cloned().collect(),
    };
    assert_eq!(received.iter().filter(|r| !verifies(&r.token, &two_keys)).count(), 5);
}

/// The rule is code. A secret that drops the previous key within its keep time, or signs with a key
/// published less than max-age + reload TTL before, is refused (naming until when, and no key); a
/// failed reload then keeps the last good configuration.
#[tokio::test]
async fn a_secret_that_drops_a_key_too_soon_is_refused() {
    let now = service::now_ms() / 1000;
    let base = serde_json::json!({
        "endpoints": [{ "aud": "codex", "url": "http://127.0.0.1:9/logout" }], "issuer": "http://127.0.0.1",
        "signing_key_pem": SECOND_KEY, "key_id": "k2",
    });
    let with = |extra: serde_json::Value| {
        let mut s = base.clone();
        s.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        s.to_string()
    };
    // Promoted ten minutes ago, previous key already gone: refused, with the time it may go.
    let dropped = with(serde_json::json!({ "key_since": now - 600, "key_published_since": now - 7_200 }));
    let err = Backchannel::from_secret_json(&dropped).err().expect("refused").to_string();
    assert!(
        err.contains("previous_key was dropped too soon") && err.contains(&(now - 600 + 4_020).to_string()),
        "{err}"
    );
    assert!(!err.contains("PRIVATE"), "{err}");
    // Published only ten minutes before it began signing: refused.
    let early = with(serde_json::json!({ "key_since": now - 8_000, "key_published_since": now - 8_600 }));
    let err = Backchannel::from_secret_json(&early).err().expect("refused").to_string();
    assert!(err.contains("must be published 3900 s first"), "{err}");
    // Promoted long enough ago: the previous key may go.
    let later = with(serde_json::json!({ "key_since": now - 5_000, "key_published_since": now - 12_000 }));
    assert!(Backchannel::from_secret_json(&later).is_ok());
    // Times in milliseconds (or in the future) would pass the waits without waiting: refused.
    let millis = with(serde_json::json!({ "key_since": now * 1000, "key_published_since": (now - 7_200) * 1000 }));
    let err = Backchannel::from_secret_json(&millis).err().expect("refused").to_string();
    assert!(err.contains("epoch seconds"), "{err}");
    // A reload that reads a refused secret keeps the last good configuration, and one that reads
    // a good secret again takes it.
    let source = Arc::new(Mutex::new(later.clone()));
    let config = instance(&source, Duration::from_millis(10)).await;
    *source.lock().unwrap() = dropped;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(config.current().await.enabled(), "the last good configuration");
    assert_eq!(config.generation(), 1);
    *source.lock().unwrap() = later;
    tokio::time::sleep(Duration::from_millis(20)).await;
    config.current().await;
    assert_eq!(config.generation(), 2, "tried again (after the TTL, shorter than RETRY_AFTER here), and taken");
}

/// A warm instance never moves to a secret that unpublishes the key it signs with too soon, even
/// one without the rotation's times (a key swapped by hand): it keeps signing with the key
/// products can still verify.
#[tokio::test]
async fn a_warm_instance_refuses_a_secret_that_unpublishes_its_key() {
    let secret = |pem: &str, kid: &str| {
        serde_json::json!({
            "endpoints": [{ "aud": "codex", "url": "http://127.0.0.1:9/logout" }], "issuer": "http://127.0.0.1",
            "signing_key_pem": pem, "key_id": kid,
        })
        .to_string()
    };
    let source = Arc::new(Mutex::new(secret(integration_tests::TEST_SIGNING_KEY, "k1")));
    let config = instance(&source, Duration::from_millis(10))
        .await
        .with_check(|in_use: &Backchannel, fresh: &Backchannel| in_use.may_be_replaced_by(fresh));
    *source.lock().unwrap() = secret(SECOND_KEY, "k2");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let current = config.current().await;
    let kids: Vec<_> = current.jwks().keys.iter().filter_map(|k| k.common.key_id.clone()).collect();
    assert_eq!(kids, ["k1"], "still the key it signed with");
    assert_eq!(config.generation(), 1);
}
