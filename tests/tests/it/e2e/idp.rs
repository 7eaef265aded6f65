//! End to end, a workspace's identity provider (the stand-in, `E2E_IDP_URL`) ends a member's
//! sessions through Global Token Revocation and Shared Signals, over HTTP.

use super::*;

pub(super) fn idp_url() -> String {
    std::env::var("E2E_IDP_URL").expect("E2E_IDP_URL: run infra/test.sh")
}

/// What the stand-in provider signs: `/sign/gtr` or `/sign/set`, for `audience`.
pub(super) async fn idp_sign(path: &str, audience: &str, extra: &[(&str, &str)]) -> String {
    let mut query = vec![("audience", audience)];
    query.extend_from_slice(extra);
    let res =
        reqwest::Client::new().get(format!("{}{path}", idp_url())).query(&query).send().await.expect("stand-in-idp");
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}

/// A workspace whose provider is the stand-in, naming members by email; returns its GTR URL,
/// which is also the audience its provider signs for.
pub(super) async fn workspace_with_provider(api: &mut Api, ws: &str) -> String {
    let audience = format!("{}/v1/workspaces/{ws}/global-token-revocation", api.base);
    let body = json!({"issuer": idp_url(), "jwks_url": format!("{}/jwks.json", idp_url()), "audience": audience,
        "subject_format": "email"});
    let route = "/v1/internal/workspaces/{workspace_id}/identity-provider";
    let path = format!("/v1/internal/workspaces/{ws}/identity-provider");
    let (status, v, _) = api.call(Method::PUT, route, &path, None, Some(body.to_string())).await;
    assert_eq!(status, 200, "{v}");
    audience
}

async fn put_user(api: &mut Api, user: &str, body: Value) {
    let (status, v, _) = api
        .call(
            Method::PUT,
            "/v1/internal/users/{user_id}",
            &format!("/v1/internal/users/{user}"),
            None,
            Some(body.to_string()),
        )
        .await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test]
async fn the_identity_provider_offboards_a_member_and_their_history_says_so() {
    let mut api = Api::new();
    let tag = SessionId::new().to_string().to_lowercase();
    let (ws, admin, member) = (format!("idp-{tag}"), format!("idp-adm-{tag}"), format!("idp-mem-{tag}"));
    let gtr = workspace_with_provider(&mut api, &ws).await;
    put_user(&mut api, &admin, json!({"workspace_id": ws, "role": "admin"})).await;
    let email = format!("{member}@Example.org");
    put_user(&mut api, &member, json!({"workspace_id": ws, "sso_linked": true, "email": email})).await;
    let boss = api.sign_in(&admin, "browser").await;
    let sessions = [api.sign_in(&member, "browser").await, api.sign_in(&member, "mobile_app").await];
    for s in &sessions {
        assert_eq!(introspect(&api, &s.token).await["active"], true);
    }

    let token = idp_sign("/sign/gtr", &gtr, &[]).await;
    let body = json!({"sub_id": {"format": "email", "email": email.to_lowercase()}}).to_string();
    let res = api.http.post(&gtr).bearer_auth(&token).header("content-type", "application/json").body(body.clone());
    assert_eq!(res.send().await.unwrap().status(), 204);
    // Refused at once: the caches were told before the answer.
    for s in &sessions {
        assert_eq!(introspect(&api, &s.token).await, json!({"active": false}));
    }
    // The stand-in product hears of each session.
    for s in &sessions {
        wait_for_logouts(&s.id, 1).await;
    }
    // The member's history, as the admin reads it: the identity provider did it.
    let (status, trail, _) = api
        .call(
            Method::GET,
            "/v1/admin/users/{user_id}/events",
            &format!("/v1/admin/users/{member}/events"),
            Some(&boss.token),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let event = &trail["events"][0];
    assert_eq!(event["actor"], json!({"type": "idp", "workspace": ws, "issuer": idp_url()}), "{trail}");
    assert_eq!((event["reason"].as_str(), event["count"].as_u64()), (Some("idp_logout"), Some(2)));
    assert_eq!(event["summary"], "All sessions (2) signed out by your organisation's identity provider");
    // The same request again: its jti was used.
    let res = api.http.post(&gtr).bearer_auth(&token).header("content-type", "application/json").body(body);
    assert_eq!(res.send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn a_shared_signal_ends_a_members_sessions_once() {
    let mut api = Api::new();
    let tag = SessionId::new().to_string().to_lowercase();
    let (ws, member) = (format!("ssf-{tag}"), format!("ssf-mem-{tag}"));
    let audience = workspace_with_provider(&mut api, &ws).await;
    let email = format!("{member}@example.org");
    put_user(&mut api, &member, json!({"workspace_id": ws, "email": email})).await;
    let me = api.sign_in(&member, "browser").await;
    let set = idp_sign("/sign/set", &audience, &[("event", "account-disabled"), ("email", &email)]).await;
    let url = format!("{}/v1/workspaces/{ws}/ssf/events", api.base);
    for _ in 0..2 {
        let res = api.http.post(&url).header("content-type", "application/secevent+jwt").body(set.clone());
        assert_eq!(res.send().await.unwrap().status(), 202, "accepted, and again (a duplicate)");
    }
    assert_eq!(api.list(&me.token, "").await.0, 401);
    let table = TestTable::e2e().await;
    let audits = table
        .items()
        .await
        .into_iter()
        .filter(|i| s(i, "PK") == format!("USER#{member}") && s(i, "Type") == "AUDIT")
        .count();
    assert_eq!(audits, 1, "the duplicate changed nothing");
}
