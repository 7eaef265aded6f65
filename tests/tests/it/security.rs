//! Security hardening on DynamoDB Local, one fresh table per test: idle timeouts and
//! absolute lifetimes, the bound on a session's apps, the caches' MACs against a forged Redis
//! entry, and what a function logs at TRACE.

use active_sessions::domain::{AppId, ClientKind, UserId};
use active_sessions::service::{self, NewSession, MAX_APPS};
use active_sessions::store::SessionsStore;
use active_sessions::token::SessionToken;
use active_sessions::{Policy, ServiceError};
use integration_tests::TestTable;

const DAY_MS: i64 = 86_400_000;

fn new_session(user: &str, client: ClientKind, ttl_seconds: Option<i64>) -> NewSession {
    NewSession {
        user_id: UserId::parse(user).unwrap(),
        apps: vec![AppId::parse("chatgpt").unwrap()],
        client,
        user_agent: active_sessions::testing::CHROME_MAC.into(),
        ip: "198.51.100.4".into(),
        location: None,
        trusted: None,
        ttl_seconds,
    }
}

/// ASVS 7.3.1: a browser session unused for longer than the idle timeout (14 days by
/// default) stops validating, and recorded use keeps it alive.
#[tokio::test]
async fn an_unused_session_stops_validating_after_the_idle_timeout() {
    let t = TestTable::new().await;
    let policy = Policy::default();
    let now = service::now_ms();
    let idle = policy.lifetimes.of(ClientKind::Browser).idle_secs * 1000;
    let slack = policy.last_active_interval_secs * 1000;
    let used = service::create_session(&t.store, &policy, new_session("ivy", ClientKind::Browser, None), now).await;
    let unused = service::create_session(&t.store, &policy, new_session("ivy", ClientKind::Browser, None), now).await;
    let (used, unused) =
        (SessionToken::parse(&used.unwrap().token).unwrap(), SessionToken::parse(&unused.unwrap().token).unwrap());

    // Within the timeout (and the write interval it allows for), both validate.
    assert!(service::authenticate(&t.store, &unused, now + idle + slack - 1000).await.is_ok());
    // Introspection records use of one, half-way through.
    t.store.touch_session(used.user_id(), used.session_id(), now + idle / 2, now + idle / 2 - slack).await.unwrap();
    let later = now + idle + slack + 1000;
    assert!(
        matches!(service::authenticate(&t.store, &unused, later).await, Err(ServiceError::InvalidToken)),
        "a session unused for longer than the idle timeout must not validate"
    );
    assert!(service::authenticate(&t.store, &used, later).await.is_ok(), "one in use stays valid");
    // The listing agrees: the idle session is not shown as active.
    let listing =
        service::list_sessions(&t.store, &used, &service::Subject::Own, &service::ListQuery::default(), later)
            .await
            .unwrap();
    assert_eq!(listing.sessions.len(), 1, "only the session in use is listed");
}

/// ASVS 7.3.2: however much it is used, a session stops validating at its client kind's
/// absolute lifetime (90 days for the CLI by default), whatever lifetime sign-in asked for. On
/// main a CLI session could ask for, and get, 400 days.
#[tokio::test]
async fn a_session_in_use_still_ends_at_its_absolute_lifetime() {
    let t = TestTable::new().await;
    let policy = Policy::default();
    let now = service::now_ms();
    let asked = 400 * 86_400;
    let created = service::create_session(&t.store, &policy, new_session("cal", ClientKind::Cli, Some(asked)), now)
        .await
        .unwrap();
    let token = SessionToken::parse(&created.token).unwrap();
    // Used every day for 120 days.
    let mut refused_at = None;
    for day in 1..=120 {
        let at = now + day * DAY_MS;
        t.store.touch_session(token.user_id(), token.session_id(), at, at - 1).await.unwrap();
        if service::authenticate(&t.store, &token, at).await.is_err() {
            refused_at = Some(day);
            break;
        }
    }
    assert_eq!(refused_at, Some(90), "a CLI session ends on day 90 however it is used");
}

/// No path takes a session past `MAX_APPS` apps; the write itself refuses the 17th. On
/// main, `add_app` appended without bound.
#[tokio::test]
async fn a_session_never_holds_more_than_the_app_bound() {
    let t = TestTable::new().await;
    let many: Vec<String> = (0..=MAX_APPS).map(|i| format!("app{i:02}")).collect();
    let policy =
        Policy { apps: active_sessions::config::FirstPartyApps::parse(&many.join(",")).unwrap(), ..Policy::default() };
    let now = service::now_ms();
    let mut input = new_session("ann", ClientKind::Browser, None);
    input.apps = many[..MAX_APPS].iter().map(|a| AppId::parse(a).unwrap()).collect();
    let created = service::create_session(&t.store, &policy, input, now).await.unwrap();
    let user = UserId::parse("ann").unwrap();
    let last = AppId::parse(&many[MAX_APPS]).unwrap();
    let _ = t.store.add_app(&user, created.session_id, &last, now).await;
    let token = SessionToken::parse(&created.token).unwrap();
    let principal = service::authenticate(&t.store, &token, now).await.unwrap();
    assert_eq!(principal.session.apps.len(), MAX_APPS, "the 17th app was written");
    assert!(!principal.session.apps.contains(&last));
}

/// A stand-in Lambda Runtime API that hands one invocation to a function binary and keeps its
/// response; the function's next poll is never answered (the test kills it).
mod runtime_api {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    pub struct Invocation {
        pub port: u16,
        pub response: mpsc::Receiver<String>,
    }

    fn read_request(reader: &mut BufReader<std::net::TcpStream>) -> Option<(String, Vec<u8>)> {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let mut length = 0;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).ok()?;
            if header.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        Some((line, body))
    }

    /// Serves `event` to the first `GET .../invocation/next`.
    pub fn serve(event: String) -> Invocation {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut served = false;
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (tx, event) = (tx.clone(), event.clone());
                let first = !served;
                served = true;
                std::thread::spawn(move || {
                    let mut writer = stream.try_clone().unwrap();
                    let mut reader = BufReader::new(stream);
                    let mut handed_out = !first;
                    while let Some((line, body)) = read_request(&mut reader) {
                        if line.starts_with("GET") && line.contains("/invocation/next") {
                            if handed_out {
                                // Never answered: the test kills the function.
                                std::thread::sleep(std::time::Duration::from_secs(600));
                                return;
                            }
                            handed_out = true;
                            let deadline = active_sessions::service::now_ms() + 30_000;
                            let head = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nlambda-runtime-aws-request-id: req-1\r\n\
                                 lambda-runtime-deadline-ms: {deadline}\r\n\
                                 lambda-runtime-invoked-function-arn: arn:aws:lambda:us-east-1:123456789012:function:f\r\n\
                                 lambda-runtime-trace-id: Root=1-00000000-000000000000000000000000\r\n\
                                 content-length: {}\r\n\r\n",
                                event.len()
                            );
                            writer.write_all(head.as_bytes()).unwrap();
                            writer.write_all(event.as_bytes()).unwrap();
                        } else {
                            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
                            writer.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n").unwrap();
                        }
                    }
                });
            }
        });
        Invocation { port, response: rx }
    }
}

/// An API Gateway (HTTP API, payload 2.0) event.
fn http_event(method: &str, path: &str, headers: serde_json::Value, body: Option<&str>) -> String {
    serde_json::json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "api", "domainName": "api.test", "domainPrefix": "api",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.1", "userAgent": "t"},
            "requestId": "r1", "routeKey": "$default", "stage": "$default",
            "time": "27/Nov/2026:06:00:00 +0000", "timeEpoch": 1_795_000_000_000_i64
        },
        "body": body, "isBase64Encoded": false
    })
    .to_string()
}

/// Runs a function's binary (debug build, beside this test's) on one event with every log level
/// at TRACE, and returns its response and everything it printed.
fn run_function(name: &str, table: &str, event: String) -> (serde_json::Value, String) {
    let bin = std::env::current_exe().unwrap().parent().and_then(std::path::Path::parent).unwrap().join(name);
    assert!(bin.exists(), "{} is missing: build the workspace first (infra/test.sh does)", bin.display());
    let api = runtime_api::serve(event);
    let out = std::env::temp_dir().join(format!("as-log-{name}-{}.txt", active_sessions::domain::SessionId::new()));
    let file = std::fs::File::create(&out).unwrap();
    let mut child = std::process::Command::new(&bin)
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{}", api.port))
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_LEVEL", "TRACE")
        .env("RUST_LOG", "trace")
        .env("TABLE_NAME", table)
        .env_remove("REDIS_URL")
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let response = api.response.recv_timeout(std::time::Duration::from_secs(60));
    // Let the last lines out, then stop it.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    let logs = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    let response = response.unwrap_or_else(|_| panic!("{name} never answered; it printed:\n{logs}"));
    (serde_json::from_str(&response).unwrap_or(serde_json::Value::Null), logs)
}

fn assert_nothing_secret(name: &str, logs: &str, token: &str) {
    let hash = SessionToken::parse(token).unwrap().hash();
    let secret = token.rsplit('.').next().unwrap();
    // The level took: the function's own DEBUG line is there.
    assert!(logs.contains("answered"), "{name} did not log at DEBUG:\n{logs}");
    for (what, needle) in [("token", token), ("token's secret", secret), ("token's hash", hash.as_str())] {
        if let Some(line) = logs.lines().find(|l| l.contains(needle)) {
            panic!("{name} logged the {what} at TRACE:\n{}", &line[..line.len().min(400)]);
        }
    }
}

/// At TRACE (`RUST_LOG=trace`, `AWS_LAMBDA_LOG_LEVEL=TRACE`), no function logs a
/// token, its secret or its hash: not the bearer header, not introspection's body, not the new
/// token sign-in answers, not the SDK's request and response bodies (the Lambda runtime logs the
/// raw invocation, header and body included, at TRACE unless filtered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_function_logs_a_token_or_its_hash_at_trace() {
    let t = TestTable::new().await;
    let policy = Policy::default();
    let now = service::now_ms();
    let me =
        service::create_session(&t.store, &policy, new_session("tia", ClientKind::Browser, None), now).await.unwrap();
    let table = t.name.clone();

    // The listing: a bearer token in the header.
    let event =
        http_event("GET", "/v1/sessions", serde_json::json!({"authorization": format!("Bearer {}", me.token)}), None);
    let (res, logs) = tokio::task::spawn_blocking({
        let table = table.clone();
        move || run_function("list-sessions", &table, event)
    })
    .await
    .unwrap();
    assert_eq!(res["statusCode"], 200, "{res}");
    assert_nothing_secret("list-sessions", &logs, &me.token);

    // Introspection: the token in a form body.
    let event = http_event(
        "POST",
        "/v1/internal/introspect",
        serde_json::json!({"content-type": "application/x-www-form-urlencoded"}),
        Some(&format!("token={}&app=codex", me.token)),
    );
    let (res, logs) = tokio::task::spawn_blocking({
        let table = table.clone();
        move || run_function("introspect-token", &table, event)
    })
    .await
    .unwrap();
    assert_eq!(res["statusCode"], 200, "{res}");
    assert_nothing_secret("introspect-token", &logs, &me.token);

    // Sign-in: a new token in the response.
    let body = format!(
        r#"{{"user_id":"tia","apps":["chatgpt"],"client":"browser","user_agent":"{}","ip":"198.51.100.4"}}"#,
        active_sessions::testing::CHROME_MAC
    );
    let event = http_event(
        "POST",
        "/v1/internal/sessions",
        serde_json::json!({"content-type": "application/json"}),
        Some(&body),
    );
    let (res, logs) = tokio::task::spawn_blocking(move || run_function("create-session", &table, event)).await.unwrap();
    assert_eq!(res["statusCode"], 201, "{res}");
    let created: serde_json::Value = serde_json::from_str(res["body"].as_str().unwrap()).unwrap();
    assert_nothing_secret("create-session", &logs, created["token"].as_str().unwrap());
}

/// What someone who can reach Redis but lacks the cache's MAC key writes there is
/// refused: a made-up entry (which, unchecked, would make introspection answer `active: true` for
/// a session that never existed), one sealed with another key, a genuine entry copied under another
/// token's key, and a forged invalidation message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_cache_entries_and_messages_are_refused() {
    use active_sessions::cache::{CachedSession, MacKey, TokenCache, CHANNEL};
    use active_sessions::domain::SessionId;
    use active_sessions::service::validate;
    use active_sessions::store::MemoryStore;
    use redis::AsyncCommands;
    use std::sync::Arc;

    let server = integration_tests::OwnServer::redis(None);
    let url = format!("redis://127.0.0.1:{}/", server.port);
    let config = integration_tests::own_cache(&url);
    let validator = Arc::new(TokenCache::new(&config).await.unwrap());
    let _subscriber = validator.subscribe().await.unwrap();
    let mut raw = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let store = MemoryStore::new();
    let now = service::now_ms();

    // A session that never existed, of a user of the attacker's choosing.
    let victim = UserId::parse("victim").unwrap();
    let made_up = SessionToken::generate(&victim, SessionId::new()).unwrap();
    let entry = CachedSession {
        user_id: victim.clone(),
        session_id: made_up.session_id(),
        signed_in_at: now,
        expires_at: now / 1000 + 3600,
        apps: vec![AppId::parse("chatgpt").unwrap()],
        cached_until_ms: now + 60_000,
    };
    let json = serde_json::to_string(&entry).unwrap();
    let key = active_sessions::cache::token_key(made_up.user_id(), made_up.hash().as_str());
    let not_ours = MacKey::from_bytes(&[1; 32]).unwrap().seal(&key, &json);
    for (what, value) in [("a plain entry", json.clone()), ("an entry sealed with another key", not_ours)] {
        raw.set::<_, _, ()>(&key, value).await.unwrap();
        let answer = validate(&store, &validator, &made_up, now).await;
        assert!(matches!(answer, Err(ServiceError::InvalidToken)), "{what} was trusted: {answer:?}");
        assert!(!validator.l1_contains(&made_up.hash(), now), "{what} reached L1");
    }

    // A real session's genuine entry, copied under the key of a token with the same ids and a
    // secret of the attacker's choosing.
    let real = active_sessions::testing::sign_in(&store, "victim", ClientKind::Browser).await;
    let real = SessionToken::parse(&real.token).unwrap();
    validate(&store, &TokenCache::new(&config).await.unwrap(), &real, now).await.unwrap();
    let genuine: String =
        raw.get(active_sessions::cache::token_key(real.user_id(), real.hash().as_str())).await.unwrap();
    let guessed = SessionToken::generate(real.user_id(), real.session_id()).unwrap();
    raw.set::<_, _, ()>(active_sessions::cache::token_key(guessed.user_id(), guessed.hash().as_str()), genuine)
        .await
        .unwrap();
    let answer = validate(&store, &validator, &guessed, now).await;
    assert!(matches!(answer, Err(ServiceError::InvalidToken)), "a copied entry was trusted: {answer:?}");

    // A forged invalidation does nothing; a genuine one still drops the entry from L1.
    validate(&store, &validator, &real, now).await.unwrap();
    assert!(validator.l1_contains(&real.hash(), now));
    let heard: i64 = raw.publish(CHANNEL, format!("t|{}", real.hash().as_str())).await.unwrap();
    assert_eq!(heard, 1, "the validator is subscribed");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(validator.l1_contains(&real.hash(), now), "a forged invalidation was applied");
    let fanout = TokenCache::new(&config).await.unwrap();
    integration_tests::fanout_invalidates(&fanout, &real).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while validator.l1_contains(&real.hash(), service::now_ms()) {
        assert!(std::time::Instant::now() < deadline, "the genuine invalidation never arrived");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The local stack's Redis, like ElastiCache with RBAC, admits only its ACL user; the
/// cache logs in with the user and password from the cache's secret.
#[tokio::test]
async fn the_cache_logs_in_to_redis_and_strangers_cannot() {
    use active_sessions::cache::{CacheConfig, TokenCache};
    use active_sessions::service::validate;
    use redis::AsyncCommands;

    let config = integration_tests::stack_cache();
    let store = active_sessions::store::MemoryStore::new();
    let me = active_sessions::testing::sign_in(&store, "redis-auth", ClientKind::Browser).await;
    let token = SessionToken::parse(&me.token).unwrap();
    let key = active_sessions::cache::token_key(token.user_id(), token.hash().as_str());
    let now = service::now_ms();

    let stranger = CacheConfig { redis_username: None, redis_password: None, ..config.clone() };
    validate(&store, &TokenCache::new(&stranger).await.unwrap(), &token, now).await.expect("DynamoDB still answers");
    let mut admin = integration_tests::stack_redis().await;
    assert!(admin.get::<_, Option<String>>(&key).await.unwrap().is_none(), "written without logging in");

    validate(&store, &TokenCache::new(&config).await.unwrap(), &token, now).await.unwrap();
    assert!(admin.get::<_, Option<String>>(&key).await.unwrap().is_some(), "the logged-in cache fills L2");

    let url = config.redis_url.unwrap();
    let mut anonymous = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await;
    if let Ok(con) = anonymous.as_mut() {
        assert!(con.get::<_, Option<String>>(&key).await.is_err(), "an anonymous client read the cache");
    }
}
