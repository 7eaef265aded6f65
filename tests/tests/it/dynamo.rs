//! Integration tests: the handlers over a real DynamoDB Local table, one fresh table per test.

use active_sessions::domain::{ClientKind, SessionId, UserId};
use active_sessions::keys;
use active_sessions::model::{Actor, AuditEvent, AuditScope, Revocation, RevokeReason, Watermark};
use active_sessions::service;
use active_sessions::store::ReadSet;
use active_sessions::store::SessionsStore;
use active_sessions::testing::{json_request, parts, request, sign_in, with_path, with_query, SignedIn, CHROME_MAC};
use active_sessions::token::SessionToken;
use active_sessions::Policy;
use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::{s, TestTable};
use lambda_http::{Body, Request, Response};
use sha2::{Digest, Sha256};

fn policy() -> Policy {
    Policy::default()
}

async fn list(t: &TestTable, token: &str, query: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let res = list_sessions::handle(&t.store, with_query(request("GET", "/v1/sessions", Some(token)), query)).await;
    let (status, _, body) = parts(&res);
    (status, body)
}

fn ids(body: &serde_json::Value) -> Vec<String> {
    body["sessions"].as_array().expect("sessions").iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect()
}

async fn revoke(t: &TestTable, token: &str, id: &str) -> Response<Body> {
    let req: Request = with_path(request("DELETE", &format!("/v1/sessions/{id}"), Some(token)), &[("id", id)]);
    revoke_session::handle(&t.store, &policy(), req).await
}

async fn revoke_all(t: &TestTable, token: &str, scope: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = request("DELETE", "/v1/sessions", Some(token));
    if let Some(scope) = scope {
        req = with_query(req, &[("scope", scope)]);
    }
    let (status, _, body) = parts(&revoke_all_sessions::handle(&t.store, &policy(), req).await);
    (status, body)
}

fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

fn revocation(actor: &str, reason: RevokeReason, at_ms: i64) -> Revocation {
    Revocation { at_ms, actor: Actor::User, actor_id: actor.into(), reason, source_ip: None }
}

fn audit(target: &UserId, r: &Revocation) -> AuditEvent {
    AuditEvent {
        event_id: SessionId::new().ulid(),
        actor: r.actor,
        actor_id: r.actor_id.clone(),
        target_user: target.clone(),
        scope: AuditScope::All,
        session_ids: vec![],
        device_labels: vec![],
        count: 0,
        reason: r.reason,
        source_ip: None,
        note: None,
        at: r.at_ms,
        expires_at: r.at_ms / 1000 + 86_400,
        actor_workspace: None,
        swept_at: None,
    }
}

async fn watermark(t: &TestTable, u: &UserId) -> Option<Watermark> {
    let read = t.store.read(&ReadSet { profiles: vec![u.clone()], ..Default::default() }).await.unwrap();
    read.profiles.get(u).and_then(|p| p.watermark)
}

#[tokio::test]
async fn create_stores_only_the_token_hash_and_a_ttl() {
    let t = TestTable::new().await;
    let body = format!(
        r#"{{"user_id":"alice","apps":["codex","chatgpt"],"client":"desktop_app","user_agent":"{CHROME_MAC}","ip":"2001:db8::1","location":{{"city":"Lyon","country":"FR"}},"trusted":true,"ttl_seconds":7200}}"#
    );
    let res = create_session::handle(&t.store, &policy(), json_request("POST", "/v1/internal/sessions", &body)).await;
    let (status, _, json) = parts(&res);
    assert_eq!(status, 201, "{json}");
    let token = json["token"].as_str().unwrap();
    let parsed = SessionToken::parse(token).unwrap();

    let item = t.get("USER#alice", &format!("SESSION#{}", parsed.session_id())).await.expect("stored");
    let expected_hash: String = Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(s(&item, "TokenHash"), expected_hash);
    assert_eq!(s(&item, "Type"), "SESSION");
    assert_eq!(s(&item, "Status"), "active");
    let secret = token.rsplit('.').next().unwrap();
    for (name, value) in &item {
        assert!(!format!("{value:?}").contains(secret), "{name} holds the token");
    }
    let expires: i64 = s(&item, "ExpiresAt").parse().unwrap();
    let signed_in: i64 = s(&item, "SignedInAt").parse().unwrap();
    assert_eq!(expires, signed_in / 1000 + 7200, "ExpiresAt is epoch seconds for TTL");
    assert!(matches!(item["Apps"], AttributeValue::L(_)));
}

#[tokio::test]
async fn refused_creates_write_nothing() {
    let t = TestTable::new().await;
    for (body, want) in [
        (r#"{"user_id":"alice","apps":[],"client":"browser","user_agent":"x","ip":"192.0.2.1"}"#.to_owned(), 400),
        (r#"{"user_id":"alice","apps":["chatgpt"],"client":"fridge","user_agent":"x","ip":"192.0.2.1"}"#.to_owned(), 400),
        (r#"{"user_id":"alice","apps":["chatgpt"],"client":"browser","user_agent":"x","ip":"192.0.2.1","ttl_seconds":-1}"#.to_owned(), 400),
        (r#"{"user_id":"alice","apps":"chatgpt","client":"browser","user_agent":"x","ip":"192.0.2.1"}"#.to_owned(), 400),
        ("[1,2,3]".to_owned(), 400),
        (format!(r#"{{"user_agent":"{}"}}"#, "x".repeat(20_000)), 413),
    ] {
        let res = create_session::handle(&t.store, &policy(), json_request("POST", "/v1/internal/sessions", &body)).await;
        let (status, ct, _) = parts(&res);
        assert_eq!((status, ct.as_str()), (want, "application/problem+json"), "{body:.60}");
    }
    assert!(t.items().await.is_empty(), "nothing written");
}

#[tokio::test]
async fn listing_shows_active_first_party_sessions_current_first() {
    let t = TestTable::new().await;
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let mut others = Vec::new();
    for client in [ClientKind::MobileApp, ClientKind::DesktopApp, ClientKind::Browser] {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        others.push(sign_in(&t.store, "alice", client).await);
    }
    let cli = sign_in(&t.store, "alice", ClientKind::Cli).await;
    sign_in(&t.store, "alice", ClientKind::ThirdParty).await;
    sign_in(&t.store, "alice", ClientKind::ConnectedApp).await;
    sign_in(&t.store, "bob", ClientKind::Browser).await;
    // Expired but not yet deleted by TTL (it deletes lazily): never shown.
    let expired = sign_in(&t.store, "alice", ClientKind::Browser).await;
    t.update_number("USER#alice", &format!("SESSION#{}", expired.session_id), "ExpiresAt", 1_000).await;
    // Revoked.
    let gone = sign_in(&t.store, "alice", ClientKind::Browser).await;
    assert_eq!(revoke(&t, &me.token, &gone.session_id.to_string()).await.status(), 204);

    let (status, body) = list(&t, &me.token, &[]).await;
    assert_eq!(status, 200);
    let want: Vec<String> = std::iter::once(&me).chain(others.iter().rev()).map(|s| s.session_id.to_string()).collect();
    assert_eq!(ids(&body), want);
    assert_eq!(body["sessions"][0]["current"], true);
    assert!(body["sessions"].as_array().unwrap()[1..].iter().all(|s| s["current"] == false));
    let row = &body["sessions"][0];
    for field in
        ["id", "apps", "client", "device", "location", "signed_in_at", "last_active_at", "trusted", "expires_at"]
    {
        assert!(row.get(field).is_some(), "{field} missing");
    }
    assert_eq!(row["device"]["label"], "Chrome on macOS");
    assert!(row["signed_in_at"].as_str().unwrap().ends_with('Z'));

    let (_, with_cli) = list(&t, &me.token, &[("include_cli", "true")]).await;
    assert!(ids(&with_cli).contains(&cli.session_id.to_string()));
    assert_eq!(ids(&with_cli).len(), want.len() + 1);
    // The expired session's token is refused too.
    assert_eq!(list(&t, &expired.token, &[]).await.0, 401);
}

#[tokio::test]
async fn listing_pages_with_cursors_bound_to_the_user() {
    let t = TestTable::new().await;
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    for _ in 0..7 {
        sign_in(&t.store, "alice", ClientKind::Browser).await;
    }
    let bob = sign_in(&t.store, "bob", ClientKind::Browser).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut q = vec![("limit", "3")];
        if let Some(c) = &cursor {
            q.push(("cursor", c));
        }
        let (status, body) = list(&t, &me.token, &q).await;
        assert_eq!(status, 200, "{body}");
        assert!(ids(&body).len() <= 3);
        seen.extend(ids(&body));
        pages += 1;
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 10);
    }
    assert_eq!(seen.len(), 8);
    assert_eq!(seen[0], me.session_id.to_string());
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 8);

    let (_, first) = list(&t, &me.token, &[("limit", "2")]).await;
    let alices_cursor = first["next_cursor"].as_str().unwrap();
    let (status, problem) = list(&t, &bob.token, &[("cursor", alices_cursor)]).await;
    assert_eq!(status, 400, "{problem}");
    for bad in [("limit", "0"), ("limit", "-1"), ("limit", "1000"), ("cursor", "bm9wZQ")] {
        assert_eq!(list(&t, &me.token, &[bad]).await.0, 400, "{bad:?}");
    }
}

#[tokio::test]
async fn revoke_one_is_a_soft_revoke_seen_on_the_stream() {
    let t = TestTable::new().await;
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let phone = sign_in(&t.store, "alice", ClientKind::MobileApp).await;
    let before: i64 =
        s(&t.get("USER#alice", &format!("SESSION#{}", phone.session_id)).await.unwrap(), "ExpiresAt").parse().unwrap();

    assert_eq!(revoke(&t, &me.token, &phone.session_id.to_string()).await.status(), 204);
    let item = t.get("USER#alice", &format!("SESSION#{}", phone.session_id)).await.expect("tombstone kept");
    assert_eq!(s(&item, "Status"), "revoked");
    assert_eq!(s(&item, "RevokedBy"), "user:alice");
    assert_eq!(s(&item, "RevokeReason"), "user_logout");
    let revoked_at: i64 = s(&item, "RevokedAt").parse().unwrap();
    let after: i64 = s(&item, "ExpiresAt").parse().unwrap();
    assert!(after < before, "ExpiresAt shortened");
    assert_eq!(after, revoked_at / 1000 + policy().tombstone_secs);

    // Right after the revoke returns, the revoked token is refused on every route.
    assert_eq!(list(&t, &phone.token, &[]).await.0, 401);
    assert_eq!(revoke(&t, &phone.token, &me.session_id.to_string()).await.status(), 401);
    assert_eq!(revoke_all(&t, &phone.token, None).await.0, 401);
    // Repeating is harmless.
    assert_eq!(revoke(&t, &me.token, &phone.session_id.to_string()).await.status(), 204);

    let modify: Vec<_> = t
        .stream_records()
        .await
        .into_iter()
        .filter(|r| {
            r.event == "MODIFY" && r.new.as_ref().is_some_and(|n| n["SK"] == format!("SESSION#{}", phone.session_id))
        })
        .collect();
    assert_eq!(modify.len(), 1, "one MODIFY: the repeat wrote nothing");
    assert_eq!(modify[0].old.as_ref().unwrap()["Status"], "active");
    assert_eq!(modify[0].new.as_ref().unwrap()["Status"], "revoked");
}

#[tokio::test]
async fn current_foreign_missing_and_malformed_ids() {
    let t = TestTable::new().await;
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let bob = sign_in(&t.store, "bob", ClientKind::Browser).await;
    let snapshot = t.items().await.len();

    let res = revoke(&t, &me.token, &me.session_id.to_string()).await;
    assert_eq!(res.status(), 409);
    let foreign = revoke(&t, &me.token, &bob.session_id.to_string()).await;
    let missing = revoke(&t, &me.token, &SessionId::new().to_string()).await;
    assert_eq!(foreign.status(), 404);
    assert_eq!(parts(&foreign), parts(&missing), "a foreign id answers exactly like a missing one");
    assert_eq!(foreign.headers(), missing.headers());
    assert_eq!(revoke(&t, &me.token, "01234").await.status(), 400);

    assert_eq!(t.items().await.len(), snapshot);
    let bobs = t.get("USER#bob", &format!("SESSION#{}", bob.session_id)).await.unwrap();
    assert_eq!(s(&bobs, "Status"), "active", "nothing written on a refused request");
    assert_eq!(list(&t, &bob.token, &[]).await.0, 200);
}

#[tokio::test]
async fn bad_tokens_get_401_with_www_authenticate() {
    let t = TestTable::new().await;
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let real = SessionToken::parse(&me.token).unwrap();
    // Right ids, wrong secret: the hash comparison refuses it.
    let forged = format!("{}.{}", me.token.rsplit_once('.').unwrap().0, "A".repeat(43));
    // Well-formed, but no such session.
    let unknown = SessionToken::generate(real.user_id(), SessionId::new()).unwrap();
    for token in [None, Some("nonsense"), Some(forged.as_str()), Some(unknown.expose())] {
        let res = list_sessions::handle(&t.store, request("GET", "/v1/sessions", token)).await;
        assert_eq!(res.status(), 401, "{token:?}");
        assert!(res.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
        assert_eq!(parts(&res).1, "application/problem+json");
    }
}

#[tokio::test]
async fn revoke_all_writes_a_watermark_that_validation_honours_at_once() {
    let t = TestTable::new().await;
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let mut others = Vec::new();
    for _ in 0..5 {
        others.push(sign_in(&t.store, "alice", ClientKind::MobileApp).await);
    }
    let bob = sign_in(&t.store, "bob", ClientKind::Browser).await;
    // An already-revoked session is not counted again.
    assert_eq!(revoke(&t, &me.token, &others[0].session_id.to_string()).await.status(), 204);

    let (status, body) = revoke_all(&t, &me.token, None).await;
    assert_eq!((status, body["revoked"].as_u64()), (200, Some(5)), "{body}");
    let profile = t.get("USER#alice", keys::PROFILE_SK).await.expect("watermark written");
    assert_eq!(s(&profile, "Type"), "PROFILE");
    assert_eq!(s(&profile, "WatermarkReason"), "user_logout_all");
    assert!(!profile.contains_key("RevokeKeep"));
    for signed_in in std::iter::once(&me).chain(&others) {
        assert_eq!(list(&t, &signed_in.token, &[]).await.0, 401);
    }
    assert_eq!(list(&t, &bob.token, &[]).await.0, 200, "nobody else is touched");
    // A sign-in after the revoke-all works.
    let fresh = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let (status, body) = list(&t, &fresh.token, &[]).await;
    assert_eq!((status, ids(&body)), (200, vec![fresh.session_id.to_string()]));
}

#[tokio::test]
async fn revoke_others_keeps_the_current_session_and_a_repeat_counts_zero() {
    let t = TestTable::new().await;
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let a = sign_in(&t.store, "alice", ClientKind::DesktopApp).await;
    let b = sign_in(&t.store, "alice", ClientKind::Cli).await;
    let (status, body) = revoke_all(&t, &me.token, Some("others")).await;
    assert_eq!((status, body["revoked"].as_u64()), (200, Some(2)));
    assert_eq!(list(&t, &a.token, &[]).await.0, 401);
    assert_eq!(list(&t, &b.token, &[]).await.0, 401);
    let (status, body) = list(&t, &me.token, &[("include_cli", "true")]).await;
    assert_eq!((status, ids(&body)), (200, vec![me.session_id.to_string()]));
    let profile = t.get("USER#alice", keys::PROFILE_SK).await.unwrap();
    assert_eq!(s(&profile, "RevokeKeep"), me.session_id.to_string());
    let (status, body) = revoke_all(&t, &me.token, Some("others")).await;
    assert_eq!((status, body["revoked"].as_u64()), (200, Some(0)));
    assert_eq!(revoke_all(&t, &me.token, Some("nobody")).await.0, 400);
    // An expired session (not yet removed by TTL) is not counted; then "all" counts the one left.
    let expired = sign_in(&t.store, "alice", ClientKind::Browser).await;
    t.update_number("USER#alice", &format!("SESSION#{}", expired.session_id), "ExpiresAt", 1_000).await;
    let (status, body) = revoke_all(&t, &me.token, None).await;
    assert_eq!((status, body["revoked"].as_u64()), (200, Some(1)), "only the kept session");
    assert_eq!(list(&t, &me.token, &[]).await.0, 401);
}

#[tokio::test]
async fn the_watermark_is_swapped_only_from_the_one_in_force() {
    let t = TestTable::new().await;
    let alice = user("alice");
    let rev = |at_ms| revocation("alice", RevokeReason::UserLogoutAll, at_ms);
    let wm = |before_ms| Watermark { before_ms, keep: None };
    let first = t.store.swap_watermark(&alice, None, wm(2_000), &rev(2_000), &audit(&alice, &rev(2_000)), None).await;
    assert_eq!(first.unwrap(), Ok(()));
    // A revoke-all that read no watermark lost the race: nothing written, and it learns the one in force.
    let stale = t.store.swap_watermark(&alice, None, wm(1_000), &rev(1_000), &audit(&alice, &rev(1_000)), None).await;
    assert_eq!(stale.unwrap(), Err(Some(wm(2_000))));
    // Likewise with a kept session on either side.
    let keep = Watermark { before_ms: 3_000, keep: Some(SessionId::new()) };
    let swapped =
        t.store.swap_watermark(&alice, Some(wm(2_000)), keep, &rev(3_000), &audit(&alice, &rev(3_000)), None).await;
    assert_eq!(swapped.unwrap(), Ok(()));
    let stale = t
        .store
        .swap_watermark(&alice, Some(wm(2_000)), wm(4_000), &rev(4_000), &audit(&alice, &rev(4_000)), None)
        .await;
    assert_eq!(stale.unwrap(), Err(Some(keep)));
    assert_eq!(watermark(&t, &alice).await, Some(keep));
    assert_eq!(t.items().await.iter().filter(|i| s(i, "Type") == "AUDIT").count(), 2, "one audit event per swap");
}

#[tokio::test]
async fn the_sweep_soft_revokes_each_covered_session_once() {
    let t = TestTable::new().await;
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let mut all: Vec<SignedIn> = vec![me.clone()];
    for _ in 0..20 {
        all.push(sign_in(&t.store, "alice", ClientKind::MobileApp).await);
    }
    let (status, body) = revoke_all(&t, &me.token, Some("others")).await;
    assert_eq!((status, body["revoked"].as_u64()), (200, Some(20)));
    let wm = watermark(&t, &user("alice")).await.unwrap();
    let rev = revocation("alice", RevokeReason::UserLogoutOthers, service::now_ms());

    assert_eq!(service::sweep_watermark(&t.store, &policy(), &user("alice"), wm, &rev, None).await.unwrap(), 20);
    assert_eq!(
        service::sweep_watermark(&t.store, &policy(), &user("alice"), wm, &rev, None).await.unwrap(),
        0,
        "idempotent"
    );
    for s_in in &all[1..] {
        let item = t.get("USER#alice", &format!("SESSION#{}", s_in.session_id)).await.unwrap();
        assert_eq!(s(&item, "Status"), "revoked");
        assert_eq!(s(&item, "RevokeReason"), "user_logout_others");
    }
    let mine = t.get("USER#alice", &format!("SESSION#{}", me.session_id)).await.unwrap();
    assert_eq!(s(&mine, "Status"), "active");
}

#[tokio::test]
async fn wrong_methods_are_405() {
    let t = TestTable::new().await;
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let res = list_sessions::handle(&t.store, request("PATCH", "/v1/sessions", Some(&me.token))).await;
    // The path's methods, both functions' (API Gateway sends other methods here: ANY).
    assert_eq!((res.status().as_u16(), res.headers()["allow"].to_str().unwrap()), (405, "GET, DELETE"));
    let res = update_session::handle(&t.store, request("PUT", "/v1/sessions/events", Some(&me.token))).await;
    assert_eq!((res.status().as_u16(), res.headers()["allow"].to_str().unwrap()), (405, "GET"), "the events resource");
    let res = create_session::handle(&t.store, &policy(), request("GET", "/v1/internal/sessions", None)).await;
    assert_eq!(res.status(), 405);
    // A CORS preflight an ANY route sends to a function: 204 with the path's methods, so the
    // browser's real request follows (API Gateway adds the CORS headers it is configured with).
    let res = list_sessions::handle(&t.store, request("OPTIONS", "/v1/sessions", None)).await;
    assert_eq!((res.status().as_u16(), res.headers()["allow"].to_str().unwrap()), (204, "GET, DELETE"));
    let res =
        revoke_session::handle(&t.store, &policy(), request("OPTIONS", "/v1/admin/users/u/sessions/x", None)).await;
    assert_eq!((res.status().as_u16(), res.headers()["allow"].to_str().unwrap()), (204, "DELETE"));
}
