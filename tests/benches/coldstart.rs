//! Cold start: the time from exec to the first `GET /2018-06-01/runtime/invocation/next` against a
//! stand-in Runtime API, for each function's release binary and for a `lambda_http` hello world
//! built the same way (`hello-lambda`). It prints each median and its ratio to the hello world:
//! - as deployed without a collector layer (traces off);
//! - with `OTEL_EXPORTER_OTLP_ENDPOINT` set, as with the collector layer: the cost of tracing at
//!   start (the exporter, its HTTP client and the batch thread; nothing is sent before the first
//!   invocation ends);
//! - with `SSL_CERT_FILE` set: a control, since the SDK's client trusts compiled-in AWS roots
//!   and reads no certificate file either way.
//!
//! With `BENCH_BEFORE_DIR` (a folder of release binaries built from an earlier commit), each of
//! those binaries is measured in the same run too, for a before/after in one set of conditions.
//!
//! Run with `infra/bench.sh coldstart` (it builds the release binaries first). `BENCH_RUNS` (30).

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FUNCTIONS: [&str; 14] = [
    "list-sessions",
    "revoke-session",
    "revoke-all-sessions",
    "update-session",
    "list-session-events",
    "create-session",
    "put-user",
    "introspect-token",
    "revocation-fanout",
    "get-revocation",
    "get-jwks",
    "logout-retry",
    "list-members",
    "web",
];

/// `<target>/release`, where the bench binary's own `deps/` folder is.
fn release_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the bench's path");
    exe.parent().and_then(Path::parent).expect("target/release").to_path_buf()
}

/// What a run sets beyond the Lambda environment.
#[derive(Clone, Copy)]
enum Variant<'a> {
    Plain,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, as the template sets it with the collector layer.
    Traces,
    /// `SSL_CERT_FILE` (only that bundle is read for the native roots, not every file of the
    /// certificates folder as well).
    CertFile(&'a str),
}

/// One cold start: exec until the runtime asks for its first invocation.
fn once(bin: &Path, variant: Variant<'_>) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a stand-in Runtime API");
    let port = listener.local_addr().unwrap().port();
    let started = Instant::now();
    let mut command = Command::new(bin);
    command.env_clear();
    match variant {
        Variant::Plain => {}
        Variant::Traces => {
            command.env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        }
        Variant::CertFile(file) => {
            command.env("SSL_CERT_FILE", file);
        }
    }
    let mut child = command
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "coldstart")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "coldstart")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "coldstart")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("TABLE_NAME", "coldstart")
        // Required by the fan-out and logout-retry; nothing is sent at start.
        .env("LOGOUT_RETRY_QUEUE_URL", "http://127.0.0.1:9/000000000000/coldstart")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{}: {e} (build the release binaries first: infra/bench.sh coldstart)", bin.display())
        });
    // A function that exits at start (a missing variable) never connects: say so, do not hang.
    listener.set_nonblocking(true).expect("a non-blocking listener");
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("{} exited ({status}) before asking for an invocation", bin.display());
                }
                std::thread::sleep(Duration::from_micros(20));
            }
            Err(e) => panic!("the runtime connects: {e}"),
        }
    };
    stream.set_nonblocking(false).expect("a blocking stream");
    let mut buf = [0u8; 256];
    let n = stream.read(&mut buf).unwrap_or(0);
    let elapsed = started.elapsed();
    let line = String::from_utf8_lossy(&buf[..n]);
    assert!(line.contains("/runtime/invocation/next"), "{}: first request was {line:?}", bin.display());
    let _ = child.kill();
    let _ = child.wait();
    elapsed
}

fn median(bin: &Path, runs: usize, variant: Variant<'_>) -> Duration {
    let mut times: Vec<Duration> = (0..runs).map(|_| once(bin, variant)).collect();
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let runs = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let dir = release_dir();
    let before = std::env::var("BENCH_BEFORE_DIR").ok().map(PathBuf::from);
    // Interleave: one warm-up each, then the medians.
    let bundle = std::env::var("BENCH_CERT_FILE").unwrap_or_else(|_| "/etc/ssl/certs/ca-certificates.crt".into());
    let hello = dir.join("hello-lambda");
    once(&hello, Variant::Plain);
    let base = median(&hello, runs, Variant::Plain);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let x = |d: Duration| d.as_secs_f64() / base.as_secs_f64();
    println!("cold start, exec to the first /runtime/invocation/next, median of {runs} (release)");
    println!("  {:<22} {:>7.1} ms  size {:>5.1} MB", "hello-lambda", ms(base), size_mb(&hello));
    println!(
        "  {:<22} {:>7} {:>14} {:>10}   {:>18}   {:>16}{}",
        "",
        "traces off",
        "",
        "",
        "traces on (+ms)",
        "SSL_CERT_FILE",
        if before.is_some() { "   before (this run)" } else { "" }
    );
    for name in FUNCTIONS {
        let bin = dir.join(name);
        once(&bin, Variant::Plain);
        once(&bin, Variant::Traces);
        let plain = median(&bin, runs, Variant::Plain);
        let traced = median(&bin, runs, Variant::Traces);
        let with_file = median(&bin, runs, Variant::CertFile(&bundle));
        let earlier = before.as_ref().map(|d| d.join(name)).filter(|b| b.exists()).map(|b| {
            once(&b, Variant::Plain);
            (median(&b, runs, Variant::Plain), size_mb(&b))
        });
        println!(
            "  {name:<22} {:>7.1} ms  size {:>5.1} MB  {:.2}x hello   {:>7.1} ms {:.2}x (+{:.1})   {:>7.1} ms {:.2}x{}",
            ms(plain),
            size_mb(&bin),
            x(plain),
            ms(traced),
            x(traced),
            ms(traced) - ms(plain),
            ms(with_file),
            x(with_file),
            earlier
                .map(|(t, size)| format!("   {:>7.1} ms {:.2}x size {size:>5.1} MB", ms(t), x(t)))
                .unwrap_or_default()
        );
    }
}

fn size_mb(bin: &Path) -> f64 {
    std::fs::metadata(bin).map(|m| m.len() as f64 / 1e6).unwrap_or(0.0)
}
