//! The token cache over TLS (`rediss://`), as ElastiCache Serverless requires: a real
//! redis-server from Debian's package with a TLS port and a certificate from a throwaway CA made
//! here with openssl. A validator warms L1 and subscribes over TLS; another cache (the fan-out's)
//! invalidates over TLS; the validator's L1 drops the token.
//!
//! Its own test binary: it points `SSL_CERT_FILE` (read by rustls-native-certs) at the test CA,
//! which is process-wide.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use active_sessions::cache::{CacheConfig, TokenCache};

use active_sessions::domain::ClientKind;
use active_sessions::service::now_ms;
use active_sessions::service::validate;
use active_sessions::store::MemoryStore;
use active_sessions::testing::sign_in;
use active_sessions::token::SessionToken;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl (apt install openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA and a certificate for localhost / 127.0.0.1 signed by it.
fn certificates() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("as-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=active-sessions test CA"]);
    openssl(&dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
    openssl(&dir, &csr);
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ],
    );
    dir
}

fn start_tls_redis(dir: &Path, port: u16) -> Server {
    let path = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", "0", "--tls-port", &port.to_string()])
        .args(["--tls-cert-file", &path("server.pem"), "--tls-key-file", &path("server.key")])
        .args(["--tls-ca-cert-file", &path("ca.pem"), "--tls-auth-clients", "no"])
        .args(["--save", "", "--appendonly", "no", "--dir", &path("")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (apt install redis-server)");
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not open its TLS port");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

#[tokio::test]
async fn invalidations_travel_over_tls() {
    let dir = certificates();
    // Trust the test CA (rustls-native-certs reads SSL_CERT_FILE). Set before any TLS client exists.
    std::env::set_var("SSL_CERT_FILE", dir.join("ca.pem"));
    let port = integration_tests::free_port();
    let _server = start_tls_redis(&dir, port);
    let config = integration_tests::own_cache(&format!("rediss://localhost:{port}/"));

    let store = MemoryStore::default();
    let signed_in = sign_in(&store, "tls-user", ClientKind::Browser).await;
    let token = SessionToken::parse(&signed_in.token).unwrap();
    let validator = Arc::new(TokenCache::new(&config).await.expect("a rediss:// cache"));
    validator.subscribe().await.expect("subscribed over TLS");
    // L1 answers only while the subscription is live; under a loaded test run the first TLS
    // subscription may need its reconnect (100 ms on). Wait for it, then L1 must be warm.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        validate(&store, &validator, &token, now_ms()).await.expect("valid");
        if validator.l1_contains(&token.hash(), now_ms()) {
            break;
        }
        assert!(Instant::now() < deadline, "warm L1");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let fanout = TokenCache::new(&config).await.expect("a rediss:// cache");
    integration_tests::fanout_invalidates(&fanout, &token).await.expect("the marker and the PUBLISH over TLS");
    let deadline = Instant::now() + Duration::from_secs(5);
    while validator.l1_contains(&token.hash(), now_ms()) {
        assert!(Instant::now() < deadline, "the invalidation never reached the validator over TLS");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The same server refuses a client that does not speak TLS: the test above really used it.
    let plain = TokenCache::new(&CacheConfig { redis_url: Some(format!("redis://localhost:{port}/")), ..config })
        .await
        .unwrap();
    assert!(
        integration_tests::fanout_invalidates(&plain, &token).await.is_err(),
        "plain TCP must not work on the TLS port"
    );
    let _ = std::fs::remove_dir_all(dir);
}
