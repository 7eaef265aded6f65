//! `local-setup`: creates the sessions table on DynamoDB Local (same keys, TTL and stream as the
//! deployed table) and, with `--demo`, signs in demo users through the real service and prints
//! curl commands that work against `cargo lambda watch`.
//!
//! Usage: local-setup --table NAME [--demo] [--base-url http://127.0.0.1:9000] [--tokens-file PATH]

use std::error::Error;

use active_sessions::domain::{AppId, ClientKind, Location, UserId};
use active_sessions::service::{self, NewSession};
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
    let store = DynamoStore::from_env(&table_name).await;
    if table::table_exists(store.client(), &table_name).await? {
        println!("table {table_name} exists");
    } else {
        table::create_table(store.client(), &table_name).await?;
        println!("created table {table_name} (PK/SK, TTL on ExpiresAt, stream NEW_AND_OLD_IMAGES)");
    }
    if !args.iter().any(|a| a == "--demo") {
        return Ok(());
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
    let token = |i: usize| rows[i]["token"].as_str().unwrap_or_default().to_owned();
    let id = |i: usize| rows[i]["session_id"].as_str().unwrap_or_default().to_owned();
    println!(
        r#"
Demo data: demo-user has 6 sessions (4 listed; the CLI and third-party ones are hidden), other-user has 1.

  export TOKEN={t0}   # demo-user, Chrome on macOS: the "current" session below
  export OTHER_TOKEN={t6}   # other-user

  # List demo-user's sessions (current first)
  curl -s {base}/v1/sessions -H "Authorization: Bearer $TOKEN"
  # ...including CLI sessions, two per page
  curl -s "{base}/v1/sessions?include_cli=true&limit=2" -H "Authorization: Bearer $TOKEN"
  # Log out the Windows desktop app (204), then see it gone
  curl -i -X DELETE {base}/v1/sessions/{id2} -H "Authorization: Bearer $TOKEN"
  # The current session can't be revoked from its own row (409)
  curl -i -X DELETE {base}/v1/sessions/{id0} -H "Authorization: Bearer $TOKEN"
  # Another user's session answers like a missing one (404)
  curl -i -X DELETE {base}/v1/sessions/{id6} -H "Authorization: Bearer $TOKEN"
  # Log out of all other sessions, then of all sessions (the token then gets 401)
  curl -s -X DELETE "{base}/v1/sessions?scope=others" -H "Authorization: Bearer $TOKEN"
  curl -s -X DELETE {base}/v1/sessions -H "Authorization: Bearer $TOKEN"
  curl -i {base}/v1/sessions -H "Authorization: Bearer $TOKEN"
  # Record a sign-in (the sign-in service's internal route); the token is shown once
  curl -s -X POST {base}/v1/internal/sessions -H 'content-type: application/json' \
    -d '{{"user_id":"demo-user","apps":["chatgpt"],"client":"browser","user_agent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36","ip":"198.51.100.10","location":{{"city":"San Francisco","country":"US"}}}}'
"#,
        t0 = token(0),
        t6 = token(6),
        id0 = id(0),
        id2 = id(2),
        id6 = id(6),
    );
    Ok(())
}
