//! `local-setup`: creates the sessions table on DynamoDB Local (same keys, TTL and stream as the
//! deployed table) and, with `--demo`, signs in demo users through the real service and prints
//! curl commands that work against `cargo lambda watch`.
//!
//! With `--queue NAME`, it also creates the back-channel retry queue and its dead-letter queue on
//! the local SQS (moto's server, `AWS_ENDPOINT_URL_SQS`), as the template deploys them, and prints
//! `LOGOUT_RETRY_QUEUE_URL=<url>` for the scripts.
//!
//! With `--idp-issuer`, `--idp-jwks-url` and `--idp-audience` (and `--demo`), it sets workspace
//! `acme`'s identity provider (the stand-in, `stand-in-idp`), which names members by email.
//!
//! Usage: local-setup --table NAME [--queue NAME] [--demo] [--base-url http://127.0.0.1:9000]
//! [--tokens-file PATH] [--idp-issuer URL --idp-jwks-url URL --idp-audience URL]

use std::error::Error;

use active_sessions::domain::{AppId, ClientKind, Location, Role, UserId, WorkspaceId};
use active_sessions::service::{self, NewSession, UserProfileInput};
use active_sessions::{table, DynamoStore, Policy};

struct Demo {
    user: &'static str,
    apps: &'static [&'static str],
    client: ClientKind,
    user_agent: &'static str,
    ip: &'static str,
    city: &'static str,
    country: &'static str,
    trusted: bool,
    hours_ago: i64,
}

const DEMO: &[Demo] = &[
    Demo { user: "demo-user", apps: &["chatgpt"], client: ClientKind::Browser, user_agent: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", ip: "198.51.100.10", city: "San Francisco", country: "US", trusted: true, hours_ago: 2 },
    Demo { user: "demo-user", apps: &["chatgpt"], client: ClientKind::MobileApp, user_agent: "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148", ip: "198.51.100.11", city: "Oakland", country: "US", trusted: true, hours_ago: 30 },
    Demo { user: "demo-user", apps: &["chatgpt", "codex"], client: ClientKind::DesktopApp, user_agent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) ChatGPT/1.2025.300 Chrome/130.0.0.0 Electron/33.0.0 Safari/537.36", ip: "203.0.113.20", city: "Seattle", country: "US", trusted: false, hours_ago: 75 },
    Demo { user: "demo-user", apps: &["api-console"], client: ClientKind::Browser, user_agent: "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", ip: "192.0.2.33", city: "Berlin", country: "DE", trusted: false, hours_ago: 240 },
    Demo { user: "demo-user", apps: &["codex"], client: ClientKind::Cli, user_agent: "codex-cli/0.50.0", ip: "198.51.100.10", city: "San Francisco", country: "US", trusted: false, hours_ago: 5 },
    Demo { user: "demo-user", apps: &["chatgpt"], client: ClientKind::ThirdParty, user_agent: "SomeIntegration/2.1", ip: "192.0.2.80", city: "", country: "", trusted: false, hours_ago: 48 },
    Demo { user: "demo-admin", apps: &["chatgpt", "api-console"], client: ClientKind::Browser, user_agent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0", ip: "203.0.113.50", city: "London", country: "GB", trusted: true, hours_ago: 3 },
    Demo { user: "sso-member", apps: &["chatgpt"], client: ClientKind::Browser, user_agent: "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15", ip: "203.0.113.60", city: "Dublin", country: "IE", trusted: false, hours_ago: 6 },
    Demo { user: "sso-member", apps: &["codex"], client: ClientKind::DesktopApp, user_agent: "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/537.36 (KHTML, like Gecko) Codex/1.0 Chrome/130.0.0.0 Electron/33.0.0 Safari/537.36", ip: "203.0.113.61", city: "Dublin", country: "IE", trusted: true, hours_ago: 50 },
    Demo { user: "other-user", apps: &["chatgpt"], client: ClientKind::Browser, user_agent: "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15", ip: "203.0.113.99", city: "Paris", country: "FR", trusted: false, hours_ago: 1 },
];

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().collect();
    let table_name =
        arg(&args, "--table").or_else(|| std::env::var("TABLE_NAME").ok()).ok_or("--table NAME is required")?;
    let store = DynamoStore::from_env(&table_name, &Default::default()).await;
    if table::table_exists(store.client(), &table_name).await? {
        println!("table {table_name} exists");
    } else {
        table::create_table(store.client(), &table_name).await?;
        println!("created table {table_name} (PK/SK, TTL on ExpiresAt, stream NEW_AND_OLD_IMAGES)");
    }
    if let Some(queue) = arg(&args, "--queue") {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let sqs = aws_sdk_sqs::Client::new(&config);
        let (url, _) = local_stack::sqs::create_retry_queue(
            &sqs,
            &queue,
            local_stack::sqs::VISIBILITY_TIMEOUT_SECS,
            local_stack::sqs::MAX_RECEIVE_COUNT,
        )
        .await?;
        println!("LOGOUT_RETRY_QUEUE_URL={url}");
    }
    if !args.iter().any(|a| a == "--demo") {
        return Ok(());
    }

    // Workspace "acme": demo-admin administers it; demo-user is a member; sso-member signs in
    // through the organisation's SSO (no self-service; the admin manages its sessions).
    let acme = WorkspaceId::parse("acme")?;
    for (user, role, sso) in
        [("demo-admin", Role::Admin, false), ("demo-user", Role::Member, false), ("sso-member", Role::Member, true)]
    {
        let input = UserProfileInput {
            workspace_id: Some(acme.clone()),
            role: Some(role),
            sso_linked: Some(sso),
            email: Some(format!("{user}@acme.example")),
            idp_subject: None,
        };
        service::put_user(&store, &UserId::parse(user)?, input).await?;
    }

    // acme's identity provider (the local stack's stand-in): it names members by email.
    if let (Some(issuer), Some(jwks_url)) = (arg(&args, "--idp-issuer"), arg(&args, "--idp-jwks-url")) {
        let input = service::ProviderInput {
            issuer,
            jwks_url,
            audience: arg(&args, "--idp-audience").ok_or("--idp-audience goes with --idp-issuer")?,
            subject_format: active_sessions::identity::SubjectFormat::Email,
        };
        let egress = active_sessions::egress::Egress { allow_loopback: true };
        service::put_identity_provider(&store, &acme, input, egress, service::now_ms()).await?;
    }

    let now = service::now_ms();
    let mut rows = Vec::new();
    for d in DEMO {
        let location = (!d.city.is_empty()).then(|| Location {
            city: Some(d.city.into()),
            region: None,
            country: Some(d.country.into()),
        });
        let input = NewSession {
            user_id: UserId::parse(d.user)?,
            apps: d.apps.iter().map(|a| AppId::parse(a)).collect::<Result<_, _>>()?,
            client: d.client,
            user_agent: d.user_agent.into(),
            ip: d.ip.into(),
            location,
            trusted: Some(d.trusted),
            ttl_seconds: None,
        };
        let created = service::create_session(&store, &Policy::default(), input, now - d.hours_ago * 3_600_000).await?;
        rows.push(serde_json::json!({
            "user_id": d.user,
            "client": d.client,
            "apps": d.apps,
            "session_id": created.session_id,
            "token": created.token,
        }));
    }
    if let Some(path) = arg(&args, "--tokens-file") {
        std::fs::write(&path, serde_json::to_string_pretty(&rows)?)?;
        println!("demo tokens written to {path}");
    }

    let base = arg(&args, "--base-url").unwrap_or_else(|| "http://127.0.0.1:9000".into());
    let receiver = arg(&args, "--receiver-url").unwrap_or_else(|| "http://127.0.0.1:9100".into());
    let token = |i: usize| rows[i]["token"].as_str().unwrap_or_default().to_owned();
    // Indices into DEMO: 0-5 demo-user, 6 demo-admin, 7-8 sso-member, 9 other-user.
    let id = |i: usize| rows[i]["session_id"].as_str().unwrap_or_default().to_owned();
    println!(
        r#"
Demo data: workspace acme with demo-admin (admin), demo-user (member: 6 sessions, 4 listed; the CLI
and third-party ones are hidden) and sso-member (SSO-linked: 2 sessions); other-user has 1 session
and no workspace.

  The page (Settings → Security → Active sessions) in a browser, signed in by a local-only link
  that sets the session cookie:
    demo-user:  {base}/local/sign-in?token={t0}
    demo-admin: {base}/local/sign-in?token={t6}&next=/admin/members
    sso-member: {base}/local/sign-in?token={t7}

  export TOKEN={t0}   # demo-user, Chrome on macOS: the "current" session below
  export ADMIN_TOKEN={t6}   # demo-admin
  export SSO_TOKEN={t7}   # sso-member

  # List demo-user's sessions (current first)
  curl -s {base}/v1/sessions -H "Authorization: Bearer $TOKEN"
  # ...including CLI sessions, two per page
  curl -s "{base}/v1/sessions?include_cli=true&limit=2" -H "Authorization: Bearer $TOKEN"
  # Log out the Windows desktop app (204), then see it gone
  curl -i -X DELETE {base}/v1/sessions/{id2} -H "Authorization: Bearer $TOKEN"
  # The current session can't be revoked from its own row (409)
  curl -i -X DELETE {base}/v1/sessions/{id0} -H "Authorization: Bearer $TOKEN"
  # Another user's session answers like a missing one (404)
  curl -i -X DELETE {base}/v1/sessions/{id9} -H "Authorization: Bearer $TOKEN"
  # Untrust a device without logging it out
  curl -s -X PATCH {base}/v1/sessions/{id1} -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{{"trusted":false}}'
  # Your revocation history
  curl -s {base}/v1/sessions/events -H "Authorization: Bearer $TOKEN"
  # An SSO-linked account has no self-service (403 sso-managed); its workspace admin manages it
  curl -i {base}/v1/sessions -H "Authorization: Bearer $SSO_TOKEN"
  curl -s {base}/v1/admin/users/sso-member/sessions -H "Authorization: Bearer $ADMIN_TOKEN"
  curl -i -X DELETE {base}/v1/admin/users/sso-member/sessions/{id8} -H "Authorization: Bearer $ADMIN_TOKEN"
  curl -s {base}/v1/admin/users/sso-member/events -H "Authorization: Bearer $ADMIN_TOKEN"
  # Offboarding: the admin ends every session of a member, with a note for the audit trail
  curl -s -X DELETE "{base}/v1/admin/users/sso-member/sessions?reason=left%20the%20company" -H "Authorization: Bearer $ADMIN_TOKEN"
  # A user outside the admin's workspace (other-user is in none) answers 404
  curl -i {base}/v1/admin/users/other-user/sessions -H "Authorization: Bearer $ADMIN_TOKEN"
  # A product introspects a token (RFC 7662), as its token cache would
  curl -s -X POST {base}/v1/internal/introspect -d "token=$TOKEN&app=codex"
  # Log out of all other sessions, then of all sessions (the token then gets 401)
  curl -s -X DELETE "{base}/v1/sessions?scope=others" -H "Authorization: Bearer $TOKEN"
  curl -s -X DELETE {base}/v1/sessions -H "Authorization: Bearer $TOKEN"
  curl -i {base}/v1/sessions -H "Authorization: Bearer $TOKEN"
  # Products' cached answers refuse it at once: the revoke told the caches before it answered
  curl -s -X POST {base}/v1/internal/introspect -d "token=$TOKEN"
  # The stand-in product got a back-channel logout token for each revoked session
  curl -s {receiver}/received
  # Record a sign-in (the sign-in service's internal route); the token is shown once
  curl -s -X POST {base}/v1/internal/sessions -H 'content-type: application/json' \
    -d '{{"user_id":"demo-user","apps":["chatgpt"],"client":"browser","user_agent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36","ip":"198.51.100.10","location":{{"city":"San Francisco","country":"US"}}}}'
"#,
        t0 = token(0),
        t6 = token(6),
        t7 = token(7),
        id0 = id(0),
        id1 = id(1),
        id2 = id(2),
        id8 = id(8),
        id9 = id(9),
    );
    Ok(())
}
