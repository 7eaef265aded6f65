//! Governance on DynamoDB Local: workspace admins, SSO-linked accounts, the audit trail, the
//! session limit and the trusted flag. One fresh table per test.

use active_sessions::domain::ClientKind;
use active_sessions::store::ReadSet;
use active_sessions::store::SessionsStore;
use active_sessions::testing::{json_request, parts, request, sign_in, with_path, with_query, SignedIn};
use active_sessions::Policy;
use integration_tests::{s, Item, TestTable};
use lambda_http::Request;
use serde_json::Value;

fn policy() -> Policy {
    Policy::default()
}

async fn put_user(t: &TestTable, user: &str, body: &str) -> u16 {
    let req = with_path(json_request("PUT", &format!("/v1/internal/users/{user}"), body), &[("user_id", user)]);
    put_user::handle(&t.store, req).await.status().as_u16()
}

/// acme: admin `ada`, members `mel` and `sso` (SSO-linked). globex: admin `gus`, member `gil`.
/// `solo` belongs to no workspace.
async fn workspaces(t: &TestTable) {
    assert_eq!(put_user(t, "ada", r#"{"workspace_id":"acme","role":"admin"}"#).await, 200);
    assert_eq!(put_user(t, "mel", r#"{"workspace_id":"acme","role":"member"}"#).await, 200);
    assert_eq!(put_user(t, "sso", r#"{"workspace_id":"acme","sso_linked":true}"#).await, 200);
    assert_eq!(put_user(t, "gus", r#"{"workspace_id":"globex","role":"admin"}"#).await, 200);
    assert_eq!(put_user(t, "gil", r#"{"workspace_id":"globex"}"#).await, 200);
}

fn admin_req(method: &str, path: &str, token: &str, params: &[(&str, &str)]) -> Request {
    with_path(request(method, path, Some(token)), params)
}

async fn admin_list(t: &TestTable, token: &str, target: &str) -> (u16, Value) {
    let req = admin_req("GET", &format!("/v1/admin/users/{target}/sessions"), token, &[("user_id", target)]);
    let (status, _, body) = parts(&list_sessions::handle(&t.store, req).await);
    (status, body)
}

async fn admin_revoke(t: &TestTable, token: &str, target: &str, id: &str) -> (u16, Value) {
    let path = format!("/v1/admin/users/{target}/sessions/{id}");
    let req = admin_req("DELETE", &path, token, &[("user_id", target), ("id", id)]);
    let (status, _, body) = parts(&revoke_session::handle(&t.store, &policy(), req).await);
    (status, body)
}

async fn admin_offboard(t: &TestTable, token: &str, target: &str, reason: Option<&str>) -> (u16, Value) {
    let mut req = admin_req("DELETE", &format!("/v1/admin/users/{target}/sessions"), token, &[("user_id", target)]);
    if let Some(r) = reason {
        req = with_query(req, &[("reason", r)]);
    }
    let (status, _, body) = parts(&revoke_all_sessions::handle(&t.store, &policy(), req).await);
    (status, body)
}

async fn events(t: &TestTable, token: &str, admin_target: Option<&str>) -> (u16, Value) {
    let req = match admin_target {
        None => request("GET", "/v1/sessions/events", Some(token)),
        Some(u) => admin_req("GET", &format!("/v1/admin/users/{u}/events"), token, &[("user_id", u)]),
    };
    let (status, _, body) = parts(&list_session_events::handle(&t.store, &policy(), req).await);
    (status, body)
}

fn audit_items(items: &[Item]) -> Vec<&Item> {
    items.iter().filter(|i| s(i, "Type") == "AUDIT").collect()
}

#[tokio::test]
async fn memberships_follow_the_profile() {
    let t = TestTable::new().await;
    assert_eq!(put_user(&t, "mel", r#"{"workspace_id":"acme"}"#).await, 200);
    assert!(t.get("WORKSPACE#acme", "MEMBER#mel").await.is_some());
    assert_eq!(put_user(&t, "mel", r#"{"workspace_id":"globex","role":"admin"}"#).await, 200);
    assert!(t.get("WORKSPACE#acme", "MEMBER#mel").await.is_none(), "old membership removed");
    let m = t.get("WORKSPACE#globex", "MEMBER#mel").await.unwrap();
    assert_eq!(s(&m, "Role"), "admin");
    assert_eq!(put_user(&t, "mel", "{}").await, 200);
    assert!(t.get("WORKSPACE#globex", "MEMBER#mel").await.is_none());
    let profile = t.get("USER#mel", "PROFILE").await.unwrap();
    assert!(!profile.contains_key("WorkspaceId"));
}

#[tokio::test]
async fn sso_linked_accounts_get_403_on_self_service_and_admins_still_manage_them() {
    let t = TestTable::new().await;
    workspaces(&t).await;
    let sso = sign_in(&t.store, "sso", ClientKind::Browser).await;
    let other = sign_in(&t.store, "sso", ClientKind::MobileApp).await;
    let ada = sign_in(&t.store, "ada", ClientKind::Browser).await;
    let before = t.items().await.len();

    let id = other.session_id.to_string();
    let mut responses = vec![
        list_sessions::handle(&t.store, request("GET", "/v1/sessions", Some(&sso.token))).await,
        revoke_session::handle(
            &t.store,
            &policy(),
            with_path(request("DELETE", "/v1/sessions/x", Some(&sso.token)), &[("id", &id)]),
        )
        .await,
        revoke_all_sessions::handle(&t.store, &policy(), request("DELETE", "/v1/sessions", Some(&sso.token))).await,
        list_session_events::handle(&t.store, &policy(), request("GET", "/v1/sessions/events", Some(&sso.token))).await,
    ];
    let mut patch = json_request("PATCH", "/v1/sessions/x", r#"{"trusted":false}"#);
    patch.headers_mut().insert("authorization", format!("Bearer {}", sso.token).parse().unwrap());
    responses.push(update_session::handle(&t.store, with_path(patch, &[("id", &id)])).await);
    for res in &responses {
        let (status, ct, body) = parts(res);
        assert_eq!((status, ct.as_str()), (403, "application/problem+json"), "{body}");
        assert!(body["type"].as_str().unwrap().ends_with("sso-managed"), "{body}");
        assert!(body["detail"].as_str().unwrap().contains("acme"));
        assert!(body.get("sessions").is_none(), "never an empty list");
    }
    assert_eq!(t.items().await.len(), before, "nothing written");

    // The workspace admin still can.
    let (status, body) = admin_list(&t, &ada.token, "sso").await;
    assert_eq!(status, 200);
    assert_eq!(body["sessions"].as_array().unwrap().len(), 2);
    assert!(body["sessions"].as_array().unwrap().iter().all(|s| s["current"] == false));
    assert_eq!(admin_revoke(&t, &ada.token, "sso", &id).await.0, 204);
    assert_eq!(admin_list(&t, &ada.token, "sso").await.1["sessions"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn admins_act_only_inside_their_workspace() {
    let t = TestTable::new().await;
    workspaces(&t).await;
    let ada = sign_in(&t.store, "ada", ClientKind::Browser).await;
    let mel = sign_in(&t.store, "mel", ClientKind::Browser).await;
    let gus = sign_in(&t.store, "gus", ClientKind::Browser).await;
    let gil = sign_in(&t.store, "gil", ClientKind::Browser).await;
    let solo = sign_in(&t.store, "solo", ClientKind::Browser).await;
    let mel_phone = sign_in(&t.store, "mel", ClientKind::MobileApp).await;
    let before = t.items().await;

    // An admin of acme against globex: 404, exactly like a user who doesn't exist.
    let cross = admin_list(&t, &ada.token, "gil").await;
    let unknown = admin_list(&t, &ada.token, "nobody-at-all").await;
    assert_eq!(cross.0, 404);
    assert_eq!(cross, unknown);
    assert_eq!(admin_revoke(&t, &ada.token, "gil", &gil.session_id.to_string()).await.0, 404);
    assert_eq!(admin_offboard(&t, &ada.token, "gil", None).await.0, 404);
    assert_eq!(events(&t, &ada.token, Some("gil")).await.0, 404);
    // ...and globex's admin against acme.
    assert_eq!(admin_revoke(&t, &gus.token, "mel", &mel_phone.session_id.to_string()).await.0, 404);
    // A member posing as an admin inside their own workspace: 403; outside it: 404.
    assert_eq!(admin_list(&t, &mel.token, "ada").await.0, 403);
    assert_eq!(admin_revoke(&t, &mel.token, "ada", &ada.session_id.to_string()).await.0, 403);
    assert_eq!(admin_offboard(&t, &mel.token, "ada", None).await.0, 403);
    assert_eq!(admin_list(&t, &mel.token, "gil").await.0, 404);
    // No workspace at all: 404 for everyone.
    assert_eq!(admin_list(&t, &solo.token, "mel").await.0, 404);
    // An admin's own sessions go through the user routes.
    assert_eq!(admin_revoke(&t, &ada.token, "ada", &ada.session_id.to_string()).await.0, 403);
    assert_eq!(admin_offboard(&t, &ada.token, "ada", None).await.0, 403);
    // A session id of another member under the wrong user: 404.
    assert_eq!(admin_revoke(&t, &ada.token, "mel", &gil.session_id.to_string()).await.0, 404);
    assert_eq!(t.items().await, before, "nothing written by any refused request");

    // Inside the workspace the admin can.
    assert_eq!(admin_revoke(&t, &ada.token, "mel", &mel_phone.session_id.to_string()).await.0, 204);
    assert_eq!(
        list_sessions::handle(&t.store, request("GET", "/v1/sessions", Some(&mel_phone.token))).await.status(),
        401
    );
    assert_eq!(list_sessions::handle(&t.store, request("GET", "/v1/sessions", Some(&mel.token))).await.status(), 200);
}

/// Every admin route refuses the admin's own user id, the reads included.
#[tokio::test]
async fn admin_routes_refuse_your_own_user_id_reads_included() {
    let t = TestTable::new().await;
    workspaces(&t).await;
    let ada = sign_in(&t.store, "ada", ClientKind::Browser).await;
    let phone = sign_in(&t.store, "ada", ClientKind::MobileApp).await;
    let before = t.items().await.len();
    let (status, body) = admin_list(&t, &ada.token, "ada").await;
    assert_eq!(status, 403, "admin list of yourself: {body}");
    assert!(body.get("sessions").is_none());
    let (status, body) = events(&t, &ada.token, Some("ada")).await;
    assert_eq!(status, 403, "admin events of yourself: {body}");
    assert!(body.get("events").is_none());
    assert_eq!(admin_revoke(&t, &ada.token, "ada", &phone.session_id.to_string()).await.0, 403);
    assert_eq!(admin_offboard(&t, &ada.token, "ada", None).await.0, 403);
    assert_eq!(t.items().await.len(), before, "nothing written");
    // A member (not an admin) naming themselves gets the same answer.
    let mel = sign_in(&t.store, "mel", ClientKind::Browser).await;
    assert_eq!(admin_list(&t, &mel.token, "mel").await.0, 403);
}

/// A member's own history says "an admin of acme", without the admin's IP address (or
/// id, unless the policy shows it); the admins see the full actor.
#[tokio::test]
async fn members_never_see_their_admins_ip_address() {
    use active_sessions::testing::with_source_ip;
    let t = TestTable::new().await;
    workspaces(&t).await;
    let ada = sign_in(&t.store, "ada", ClientKind::Browser).await;
    let mel = sign_ins(&t, "mel", 3).await;
    let path = format!("/v1/admin/users/mel/sessions/{}", mel[1].session_id);
    let req = with_source_ip(
        admin_req("DELETE", &path, &ada.token, &[("user_id", "mel"), ("id", &mel[1].session_id.to_string())]),
        "203.0.113.99",
    );
    assert_eq!(revoke_session::handle(&t.store, &policy(), req).await.status(), 204);
    // The member's own revoke keeps their own IP in their own history.
    let path = format!("/v1/sessions/{}", mel[2].session_id);
    let req = with_source_ip(
        with_path(request("DELETE", &path, Some(&mel[0].token)), &[("id", &mel[2].session_id.to_string())]),
        "198.51.100.7",
    );
    assert_eq!(revoke_session::handle(&t.store, &policy(), req).await.status(), 204);

    let (status, mine) = events(&t, &mel[0].token, None).await;
    assert_eq!(status, 200, "{mine}");
    let by_admin = &mine["events"][1];
    assert_eq!(by_admin["reason"], "admin_revoke", "{mine}");
    assert!(!mine.to_string().contains("203.0.113.99"), "the admin's IP reached the member: {mine}");
    assert!(!mine.to_string().contains("\"ada\""), "the admin's id reached the member: {mine}");
    assert_eq!(by_admin["actor"]["type"], "admin");
    assert_eq!(by_admin["actor"]["workspace"], "acme");
    assert_eq!(by_admin["summary"], "Chrome on macOS signed out by an admin of acme");
    assert_eq!(mine["events"][0]["source_ip"], "198.51.100.7", "your own IP stays in your own history");

    // Where the policy says so, the member sees which admin, but still not the admin's IP.
    let named = Policy { admin_id_visible_to_members: true, ..policy() };
    let req = request("GET", "/v1/sessions/events", Some(&mel[0].token));
    let (_, _, mine) = parts(&list_session_events::handle(&t.store, &named, req).await);
    assert_eq!(mine["events"][1]["actor"]["id"], "ada");
    assert!(!mine.to_string().contains("203.0.113.99"));

    // The admin sees the full actor, IP included.
    let (status, theirs) = events(&t, &ada.token, Some("mel")).await;
    assert_eq!(status, 200);
    assert_eq!(theirs["events"][1]["actor"]["id"], "ada");
    assert_eq!(theirs["events"][1]["source_ip"], "203.0.113.99");

    // The member moves to another workspace: the event still names the admin's, as it was.
    assert_eq!(put_user(&t, "mel", r#"{"workspace_id":"globex"}"#).await, 200);
    let (_, mine) = events(&t, &mel[0].token, None).await;
    assert_eq!(mine["events"][1]["actor"]["workspace"], "acme", "{mine}");
    assert_eq!(mine["events"][1]["summary"], "Chrome on macOS signed out by an admin of acme");
}

#[tokio::test]
async fn every_revocation_leaves_exactly_one_audit_event() {
    let t = TestTable::new().await;
    workspaces(&t).await;
    let ada = sign_in(&t.store, "ada", ClientKind::Browser).await;
    let mel: Vec<SignedIn> = sign_ins(&t, "mel", 5).await;

    // User revoke-one, then a repeat: one event.
    let me = &mel[0];
    let target = mel[1].session_id.to_string();
    for _ in 0..2 {
        let req = with_path(request("DELETE", "/v1/sessions/x", Some(&me.token)), &[("id", &target)]);
        assert_eq!(revoke_session::handle(&t.store, &policy(), req).await.status(), 204);
    }
    // Admin revoke-one.
    assert_eq!(admin_revoke(&t, &ada.token, "mel", &mel[2].session_id.to_string()).await.0, 204);
    // Admin offboarding: the 3 left (mel[0], mel[3], mel[4]) in one event with the count.
    let (status, body) = admin_offboard(&t, &ada.token, "mel", Some("left the company")).await;
    assert_eq!((status, body["revoked"].as_u64()), (200, Some(3)));
    for s_in in &mel {
        let res = list_sessions::handle(&t.store, request("GET", "/v1/sessions", Some(&s_in.token))).await;
        assert_eq!(res.status(), 401);
    }

    let items = t.items().await;
    let audits = audit_items(&items);
    assert_eq!(audits.len(), 3, "one per revocation");
    assert!(audits.iter().all(|a| s(a, "PK") == "USER#mel"));
    let ttl: i64 = s(audits[0], "ExpiresAt").parse().unwrap();
    let at: i64 = s(audits[0], "At").parse().unwrap();
    assert_eq!(ttl, at / 1000 + 400 * 86_400, "kept 400 days");

    let (status, body) = events(&t, &ada.token, Some("mel")).await;
    assert_eq!(status, 200);
    let ev = body["events"].as_array().unwrap();
    assert_eq!(ev.len(), 3);
    assert_eq!(
        (ev[0]["reason"].as_str(), ev[0]["scope"].as_str(), ev[0]["count"].as_u64()),
        (Some("admin_offboard"), Some("all"), Some(3))
    );
    assert_eq!(ev[0]["actor"]["type"], "admin");
    assert_eq!(ev[0]["actor"]["id"], "ada");
    assert_eq!(ev[0]["note"], "left the company");
    assert_eq!(ev[1]["reason"], "admin_revoke");
    assert_eq!(ev[1]["summary"], "Chrome on macOS signed out by an admin");
    assert_eq!(ev[2]["reason"], "user_logout");
    assert_eq!(ev[2]["actor"]["type"], "user");
    assert_eq!(ev[2]["sessions"][0]["id"], target);

    // The member reads the same trail after signing in again.
    let back = sign_in(&t.store, "mel", ClientKind::Browser).await;
    let (status, mine) = events(&t, &back.token, None).await;
    assert_eq!((status, mine["events"].as_array().unwrap().len()), (200, 3));
    let (_, page) = {
        let req = with_query(request("GET", "/v1/sessions/events", Some(&back.token)), &[("limit", "2")]);
        let (status, _, body) = parts(&list_session_events::handle(&t.store, &policy(), req).await);
        (status, body)
    };
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    let req = with_query(
        request("GET", "/v1/sessions/events", Some(&back.token)),
        &[("cursor", page["next_cursor"].as_str().unwrap())],
    );
    let (_, _, rest) = parts(&list_session_events::handle(&t.store, &policy(), req).await);
    assert_eq!(rest["events"].as_array().unwrap().len(), 1);
}

async fn sign_ins(t: &TestTable, user: &str, n: usize) -> Vec<SignedIn> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(sign_in(&t.store, user, ClientKind::Browser).await);
    }
    out
}

#[tokio::test]
async fn the_session_limit_evicts_the_least_recently_active_session() {
    let t = TestTable::new().await;
    let tight = Policy { max_sessions: 3, ..Policy::default() };
    let sign = |user: &str| {
        let body = format!(
            r#"{{"user_id":"{user}","apps":["chatgpt"],"client":"browser","user_agent":"Mozilla/5.0","ip":"192.0.2.4"}}"#
        );
        json_request("POST", "/v1/internal/sessions", &body)
    };
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let (status, _, body) = parts(&create_session::handle(&t.store, &tight, sign("lim")).await);
        assert_eq!(status, 201);
        tokens.push((body["session_id"].as_str().unwrap().to_owned(), body["token"].as_str().unwrap().to_owned()));
    }
    // The newest session is the least recently active one: it must be the one evicted.
    t.update_number("USER#lim", &format!("SESSION#{}", tokens[2].0), "LastActiveAt", 1_000).await;
    let (status, _, _) = parts(&create_session::handle(&t.store, &tight, sign("lim")).await);
    assert_eq!(status, 201);
    let evicted = t.get("USER#lim", &format!("SESSION#{}", tokens[2].0)).await.unwrap();
    assert_eq!(s(&evicted, "Status"), "revoked");
    assert_eq!(s(&evicted, "RevokeReason"), "session_limit");
    assert_eq!(s(&evicted, "RevokedBy"), "system");
    for (id, _) in &tokens[..2] {
        assert_eq!(s(&t.get("USER#lim", &format!("SESSION#{id}")).await.unwrap(), "Status"), "active");
    }
    let items = t.items().await;
    let audits = audit_items(&items);
    assert_eq!(audits.len(), 1);
    assert_eq!(s(audits[0], "Reason"), "session_limit");
    assert_eq!(s(audits[0], "Actor"), "system");
    let res = list_sessions::handle(&t.store, request("GET", "/v1/sessions", Some(&tokens[0].1))).await;
    assert_eq!(parts(&res).2["sessions"].as_array().unwrap().len(), 3, "still at the cap");
}

#[tokio::test]
async fn the_trusted_flag_changes_without_a_logout() {
    let t = TestTable::new().await;
    let me = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let phone = sign_in(&t.store, "alice", ClientKind::MobileApp).await;
    let bob = sign_in(&t.store, "bob", ClientKind::Browser).await;
    let patch = |id: &str, body: &str| {
        let mut req = json_request("PATCH", "/v1/sessions/x", body);
        req.headers_mut().insert("authorization", format!("Bearer {}", me.token).parse().unwrap());
        with_path(req, &[("id", id)])
    };
    let res = update_session::handle(&t.store, patch(&phone.session_id.to_string(), r#"{"trusted":true}"#)).await;
    let (status, _, body) = parts(&res);
    assert_eq!((status, body["trusted"].clone()), (200, Value::Bool(true)));
    let item = t.get("USER#alice", &format!("SESSION#{}", phone.session_id)).await.unwrap();
    assert_eq!(item["Trusted"], aws_sdk_dynamodb::types::AttributeValue::Bool(true));
    assert_eq!(s(&item, "Status"), "active");
    let res = update_session::handle(&t.store, patch(&bob.session_id.to_string(), r#"{"trusted":true}"#)).await;
    assert_eq!(res.status(), 404);
    let bobs = t.get("USER#bob", &format!("SESSION#{}", bob.session_id)).await.unwrap();
    assert_eq!(bobs["Trusted"], aws_sdk_dynamodb::types::AttributeValue::Bool(false));
}

#[tokio::test]
async fn an_expiry_is_recorded_once_however_often_it_is_delivered() {
    let t = TestTable::new().await;
    let alice = active_sessions::domain::UserId::parse("alice").unwrap();
    let signed = sign_in(&t.store, "alice", ClientKind::Browser).await;
    let read = ReadSet { sessions: vec![(alice.clone(), signed.session_id)], ..Default::default() };
    let session = t.store.read(&read).await.unwrap().sessions.remove(&(alice.clone(), signed.session_id)).unwrap();
    // TTL removes it; the fan-out sees the removal (maybe more than once).
    t.store
        .client()
        .delete_item()
        .table_name(&t.name)
        .key("PK", aws_sdk_dynamodb::types::AttributeValue::S("USER#alice".into()))
        .key("SK", aws_sdk_dynamodb::types::AttributeValue::S(format!("SESSION#{}", signed.session_id)))
        .send()
        .await
        .unwrap();
    let keep_until = active_sessions::service::now_ms() / 1000 + 7_200;
    for _ in 0..3 {
        active_sessions::service::record_expiry(&t.store, &policy(), &session, keep_until).await.unwrap();
    }
    let items = t.items().await;
    let audits = audit_items(&items);
    assert_eq!(audits.len(), 1);
    assert_eq!((s(audits[0], "Reason"), s(audits[0], "Actor")), ("expired".to_owned(), "system".to_owned()));
    // In the session's place, its tombstone: revoked by the system because it expired, kept at
    // least until the receipts may be read.
    let tombstone = t.get("USER#alice", &format!("SESSION#{}", signed.session_id)).await.unwrap();
    assert_eq!((s(&tombstone, "Status"), s(&tombstone, "RevokeReason")), ("revoked".to_owned(), "expired".to_owned()));
    assert!(s(&tombstone, "ExpiresAt").parse::<i64>().unwrap() >= keep_until);
}
