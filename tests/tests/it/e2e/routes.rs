//! End to end, the contract: every documented route answers every status it documents.

use super::*;

#[tokio::test]
async fn every_documented_route_and_status_is_served() {
    let mut api = Api::new();
    let tag = SessionId::new().to_string().to_lowercase();
    let (ws, other_ws) = (format!("ws-{tag}"), format!("wsb-{tag}"));
    let (admin, member, sso, stranger) =
        (format!("adm-{tag}"), format!("mem-{tag}"), format!("sso-{tag}"), format!("str-{tag}"));

    // PUT /v1/internal/users/{user_id}: 200, 400, 415.
    let users = "/v1/internal/users/{user_id}";
    for (u, body) in [
        (&admin, json!({"workspace_id": ws, "role": "admin"})),
        (&member, json!({"workspace_id": ws})),
        (&sso, json!({"workspace_id": ws, "sso_linked": true})),
        (&stranger, json!({"workspace_id": other_ws, "role": "admin"})),
    ] {
        let (status, v, _) =
            api.call(Method::PUT, users, &format!("/v1/internal/users/{u}"), None, Some(body.to_string())).await;
        assert_eq!(status, 200, "{v}");
    }
    api.call(Method::PUT, users, &format!("/v1/internal/users/{member}"), None, Some(r#"{"role":"boss"}"#.into()))
        .await;
    raw(&mut api, Method::PUT, users, &format!("/v1/internal/users/{member}"), None, "text/plain", "{}").await;

    // POST /v1/internal/sessions: 201, 400, 413, 415.
    let me = api.sign_in(&member, "browser").await;
    let other = api.sign_in(&member, "browser").await;
    let third = api.sign_in(&member, "mobile_app").await;
    let boss = api.sign_in(&admin, "browser").await;
    let sso_s = api.sign_in(&sso, "browser").await;
    let str_s = api.sign_in(&stranger, "browser").await;
    let route = "/v1/internal/sessions";
    api.call(Method::POST, route, route, None, Some(r#"{"user_id":"x","apps":[]}"#.into())).await;
    api.call(Method::POST, route, route, None, Some(format!(r#"{{"pad":"{}"}}"#, "x".repeat(17_000)))).await;
    raw(&mut api, Method::POST, route, route, None, "text/plain", "hi").await;

    // GET /v1/sessions: 200, 400, 401, 403.
    api.list(&me.token, "?limit=1").await;
    api.list(&me.token, "?limit=0").await;
    api.list("not-a-token", "").await;
    api.list(&sso_s.token, "").await;

    // PATCH /v1/sessions/{id}: 200, 400, 401, 403, 404, 415.
    let patch = "/v1/sessions/{id}";
    let other_path = format!("/v1/sessions/{}", other.id);
    api.call(Method::PATCH, patch, &other_path, Some(&me.token), Some(r#"{"trusted":true}"#.into())).await;
    api.call(Method::PATCH, patch, &other_path, Some(&me.token), Some(r#"{"trusted":"yes"}"#.into())).await;
    api.call(Method::PATCH, patch, &other_path, Some("not-a-token"), Some(r#"{"trusted":true}"#.into())).await;
    api.call(Method::PATCH, patch, &other_path, Some(&sso_s.token), Some(r#"{"trusted":true}"#.into())).await;
    let missing = format!("/v1/sessions/{}", SessionId::new());
    api.call(Method::PATCH, patch, &missing, Some(&me.token), Some(r#"{"trusted":true}"#.into())).await;
    raw(&mut api, Method::PATCH, patch, &other_path, Some(&me.token), "text/plain", "x").await;

    // DELETE /v1/sessions/{id}: 204, 400, 401, 403, 404, 409.
    api.revoke(&me.token, &other.id).await;
    api.revoke(&me.token, "not-an-id").await;
    api.revoke("not-a-token", &other.id).await;
    api.revoke(&sso_s.token, &other.id).await;
    api.revoke(&me.token, &SessionId::new().to_string()).await;
    api.revoke(&me.token, &me.id).await;

    // GET /v1/sessions/{id}/revocation: 200, 400, 401, 403, 404, 409.
    let rcpt = "/v1/sessions/{id}/revocation";
    let rcpt_path = format!("/v1/sessions/{}/revocation", other.id);
    api.call(Method::GET, rcpt, &rcpt_path, Some(&me.token), None).await;
    api.call(Method::GET, rcpt, "/v1/sessions/not-an-id/revocation", Some(&me.token), None).await;
    api.call(Method::GET, rcpt, &rcpt_path, Some("not-a-token"), None).await;
    api.call(Method::GET, rcpt, &rcpt_path, Some(&sso_s.token), None).await;
    api.call(Method::GET, rcpt, &format!("/v1/sessions/{}/revocation", SessionId::new()), Some(&me.token), None).await;
    api.call(Method::GET, rcpt, &format!("/v1/sessions/{}/revocation", me.id), Some(&me.token), None).await;

    // GET /v1/sessions/events: 200, 400, 401, 403.
    let ev = "/v1/sessions/events";
    api.call(Method::GET, ev, ev, Some(&me.token), None).await;
    api.call(Method::GET, ev, &format!("{ev}?limit=0"), Some(&me.token), None).await;
    api.call(Method::GET, ev, ev, Some("not-a-token"), None).await;
    api.call(Method::GET, ev, ev, Some(&sso_s.token), None).await;

    // Admin routes: 200/204, 400, 401, 403 (a member posing as admin), 404 (another workspace's admin).
    let list_r = "/v1/admin/users/{user_id}/sessions";
    let member_sessions = format!("/v1/admin/users/{member}/sessions");
    api.call(Method::GET, list_r, &member_sessions, Some(&boss.token), None).await;
    api.call(Method::GET, list_r, &format!("{member_sessions}?limit=0"), Some(&boss.token), None).await;
    api.call(Method::GET, list_r, &member_sessions, Some("not-a-token"), None).await;
    api.call(Method::GET, list_r, &format!("/v1/admin/users/{admin}/sessions"), Some(&me.token), None).await;
    api.call(Method::GET, list_r, &member_sessions, Some(&str_s.token), None).await;

    let ev_r = "/v1/admin/users/{user_id}/events";
    let member_events = format!("/v1/admin/users/{member}/events");
    let (status, trail, _) = api.call(Method::GET, ev_r, &member_events, Some(&boss.token), None).await;
    assert_eq!(status, 200);
    assert_eq!(trail["events"][0]["reason"], "user_logout", "{trail}");
    api.call(Method::GET, ev_r, &format!("{member_events}?limit=0"), Some(&boss.token), None).await;
    api.call(Method::GET, ev_r, &member_events, Some("not-a-token"), None).await;
    api.call(Method::GET, ev_r, &format!("/v1/admin/users/{admin}/events"), Some(&me.token), None).await;
    api.call(Method::GET, ev_r, &member_events, Some(&str_s.token), None).await;

    let one_r = "/v1/admin/users/{user_id}/sessions/{id}";
    let third_path = format!("/v1/admin/users/{member}/sessions/{}", third.id);
    api.call(Method::DELETE, one_r, &format!("/v1/admin/users/{member}/sessions/bad"), Some(&boss.token), None).await;
    api.call(Method::DELETE, one_r, &third_path, Some("not-a-token"), None).await;
    api.call(Method::DELETE, one_r, &format!("/v1/admin/users/{admin}/sessions/{}", boss.id), Some(&me.token), None)
        .await;
    api.call(Method::DELETE, one_r, &third_path, Some(&str_s.token), None).await;
    let (status, _, _) = api.call(Method::DELETE, one_r, &third_path, Some(&boss.token), None).await;
    assert_eq!(status, 204);
    assert_eq!(api.list(&third.token, "").await.0, 401, "revoked by the admin");

    let arc = "/v1/admin/users/{user_id}/sessions/{id}/revocation";
    let arc_path = format!("{third_path}/revocation");
    api.call(Method::GET, arc, &arc_path, Some(&boss.token), None).await;
    api.call(Method::GET, arc, &format!("/v1/admin/users/{member}/sessions/bad/revocation"), Some(&boss.token), None)
        .await;
    api.call(Method::GET, arc, &arc_path, Some("not-a-token"), None).await;
    api.call(
        Method::GET,
        arc,
        &format!("/v1/admin/users/{admin}/sessions/{}/revocation", boss.id),
        Some(&me.token),
        None,
    )
    .await;
    api.call(Method::GET, arc, &arc_path, Some(&str_s.token), None).await;
    api.call(
        Method::GET,
        arc,
        &format!("/v1/admin/users/{member}/sessions/{}/revocation", me.id),
        Some(&boss.token),
        None,
    )
    .await;

    api.call(Method::DELETE, list_r, &format!("{member_sessions}?scope=others"), Some(&boss.token), None).await;
    api.call(Method::DELETE, list_r, &member_sessions, Some("not-a-token"), None).await;
    api.call(Method::DELETE, list_r, &format!("/v1/admin/users/{admin}/sessions"), Some(&me.token), None).await;
    api.call(Method::DELETE, list_r, &member_sessions, Some(&str_s.token), None).await;

    // GET /.well-known/jwks.json: 200, 405.
    let jw = "/.well-known/jwks.json";
    let (status, keys, _) = api.call(Method::GET, jw, jw, None, None).await;
    assert_eq!((status, keys["keys"][0]["crv"].as_str()), (200, Some("P-256")), "{keys}");
    // The 405 documented on the path's one operation: any other method.
    let res = api.http.delete(format!("{}{jw}", api.base)).send().await.expect("the JWKS route");
    let status = res.status().as_u16();
    assert_eq!((status, res.headers()["allow"].to_str().unwrap()), (405, "GET"));
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    api.seen.insert(("GET".to_owned(), jw.to_owned(), status));

    // GET /v1/admin/members: 200, 400, 401, 403, 405.
    let mr = "/v1/admin/members";
    let (status, body, _) = api.call(Method::GET, mr, mr, Some(&boss.token), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["members"].as_array().unwrap().iter().any(|m| m["user_id"] == member.as_str()), "{body}");
    api.call(Method::GET, mr, &format!("{mr}?limit=0"), Some(&boss.token), None).await;
    api.call(Method::GET, mr, mr, Some("not-a-token"), None).await;
    assert_eq!(api.call(Method::GET, mr, mr, Some(&me.token), None).await.0, 403, "a member is not an admin");
    let res = api.http.post(format!("{}{mr}", api.base)).bearer_auth(&boss.token).send().await.expect("members");
    assert_eq!(res.status().as_u16(), 405);
    api.seen.insert(("GET".to_owned(), mr.to_owned(), 405));

    // The pages: GET /, the two pages and the assets (200, 303, 404, 405); no token needed.
    active_sessions::config::install_crypto_provider();
    let pages = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for (route, path, expected) in [
        ("/", "/", 303),
        ("/settings/security/sessions", "/settings/security/sessions", 200),
        ("/admin/members", "/admin/members", 200),
        ("/assets/{file}", "/assets/app.js", 200),
        ("/assets/{file}", "/assets/nope.css", 404),
    ] {
        let res = pages.get(format!("{}{path}", api.base)).send().await.expect("a page");
        assert_eq!(res.status().as_u16(), expected, "{path}");
        assert!(
            res.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"),
            "{path}"
        );
        api.seen.insert(("GET".to_owned(), route.to_owned(), expected));
        let res = pages.delete(format!("{}{path}", api.base)).send().await.expect("a page");
        assert_eq!(res.status().as_u16(), 405, "{path}");
        api.seen.insert(("GET".to_owned(), route.to_owned(), 405));
    }

    // POST /v1/internal/introspect: 200, 400, 415.
    let intro = "/v1/internal/introspect";
    raw(
        &mut api,
        Method::POST,
        intro,
        intro,
        None,
        "application/x-www-form-urlencoded",
        &format!("token={}", boss.token),
    )
    .await;
    raw(&mut api, Method::POST, intro, intro, None, "application/x-www-form-urlencoded", "app=codex").await;
    raw(&mut api, Method::POST, intro, intro, None, "application/json", "{}").await;

    // DELETE /v1/sessions: 400, 401, 403, then 200.
    api.revoke_all(&me.token, "?scope=nope").await;
    api.revoke_all("not-a-token", "").await;
    api.revoke_all(&sso_s.token, "").await;
    api.revoke_all(&boss.token, "?scope=others").await;
    // Offboarding last: it ends the member's sessions.
    let (status, body, _) = api
        .call(Method::DELETE, list_r, &format!("{member_sessions}?reason=offboarded"), Some(&boss.token), None)
        .await;
    assert_eq!((status, body["revoked"].as_u64()), (200, Some(1)), "{body}");
    assert_eq!(api.list(&me.token, "").await.0, 401);

    // The identity provider's routes. PUT .../identity-provider: 200, 400, 413, 415.
    let idp_r = "/v1/internal/workspaces/{workspace_id}/identity-provider";
    let idp_ws = format!("idpr-{tag}");
    let gtr_url = super::idp::workspace_with_provider(&mut api, &idp_ws).await;
    let idp_path = format!("/v1/internal/workspaces/{idp_ws}/identity-provider");
    let bad = json!({"issuer": "https://idp.example", "jwks_url": "http://idp.example/keys", "audience": "a",
        "subject_format": "email"});
    api.call(Method::PUT, idp_r, &idp_path, None, Some(bad.to_string())).await;
    api.call(Method::PUT, idp_r, &idp_path, None, Some(format!(r#"{{"pad":"{}"}}"#, "x".repeat(17_000)))).await;
    raw(&mut api, Method::PUT, idp_r, &idp_path, None, "text/plain", "{}").await;
    // POST .../global-token-revocation: 204, 400, 401, 405, 413, 415 (each after a good token).
    let gtr_r = "/v1/workspaces/{workspace_id}/global-token-revocation";
    let nobody = json!({"sub_id": {"format": "email", "email": format!("nobody-{tag}@example.org")}}).to_string();
    for (ct, body, status) in [
        ("application/json", nobody.clone(), 204),
        ("application/json", r#"{"sub_id":{"format":"email"}}"#.to_owned(), 400),
        ("application/json", format!(r#"{{"pad":"{}"}}"#, "x".repeat(17_000)), 413),
        ("text/plain", nobody.clone(), 415),
    ] {
        let token = super::idp::idp_sign("/sign/gtr", &gtr_url, &[]).await;
        let res =
            api.http.post(&gtr_url).bearer_auth(token).header("content-type", ct).body(body).send().await.unwrap();
        assert_eq!(res.status().as_u16(), status);
        api.seen.insert(("POST".to_owned(), gtr_r.to_owned(), status));
    }
    let res = api.http.post(&gtr_url).bearer_auth("not-a-jwt").header("content-type", "application/json").body(nobody);
    assert_eq!(res.send().await.unwrap().status().as_u16(), 401);
    api.seen.insert(("POST".to_owned(), gtr_r.to_owned(), 401));
    let res = api.http.get(&gtr_url).send().await.unwrap();
    assert_eq!((res.status().as_u16(), res.headers()["allow"].to_str().unwrap()), (405, "POST"));
    api.seen.insert(("POST".to_owned(), gtr_r.to_owned(), 405));
    // POST .../ssf/events: 202, 400, 405, 413, 415 (RFC 8935's JSON errors).
    let ssf_r = "/v1/workspaces/{workspace_id}/ssf/events";
    let ssf_url = format!("{}/v1/workspaces/{idp_ws}/ssf/events", api.base);
    let verification = super::idp::idp_sign("/sign/set", &gtr_url, &[("event", "verification")]).await;
    for (ct, body, status) in [
        ("application/secevent+jwt", verification.clone(), 202),
        ("application/secevent+jwt", "not-a-jwt".to_owned(), 400),
        ("application/secevent+jwt", "x".repeat(17_000), 413),
        ("application/json", verification, 415),
    ] {
        let res = api.http.post(&ssf_url).header("content-type", ct).body(body).send().await.unwrap();
        assert_eq!(res.status().as_u16(), status);
        if status != 202 {
            assert_eq!(res.headers()["content-type"], "application/json");
            let err: Value = res.json().await.unwrap();
            assert!(err["err"].is_string() && err["description"].is_string(), "{err}");
        }
        api.seen.insert(("POST".to_owned(), ssf_r.to_owned(), status));
    }
    let res = api.http.get(&ssf_url).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 405);
    api.seen.insert(("POST".to_owned(), ssf_r.to_owned(), 405));

    let documented: BTreeSet<(String, String, u16)> = openapi_routes()
        .into_iter()
        .flat_map(|((m, p), statuses): ((String, String), BTreeSet<u16>)| {
            statuses.into_iter().map(move |s| (m.clone(), p.clone(), s))
        })
        .collect();
    let missing: Vec<_> = documented.difference(&api.seen).collect();
    assert!(missing.is_empty(), "documented but never answered: {missing:?}");
    let undocumented: Vec<_> = api.seen.difference(&documented).collect();
    assert!(undocumented.is_empty(), "answered but not documented: {undocumented:?}");
}
