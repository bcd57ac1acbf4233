//! The civic under test, when the benchmark starts its own: child processes of this same binary
//! on loopback, on a fresh data directory (or a fresh PostgreSQL schema set), with the demo
//! catalogue, rate limits off and a dev key the benchmark knows. Killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

/// One civic process.
pub struct Process {
    child: Child,
    /// Its gRPC address.
    pub grpc: SocketAddr,
    /// Its HTTP address.
    pub http: SocketAddr,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// The process id, for reading its memory.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// What to start.
pub struct Launch<'a> {
    /// `all`, `catalogue` or `gateway`.
    pub target: &'a str,
    /// The data directory.
    pub data_dir: &'a std::path::Path,
    /// The dev key tokens are signed with.
    pub dev_key: &'a str,
    /// A PostgreSQL URL, or empty for SQLite.
    pub database_url: &'a str,
    /// Extra environment (`CIVIC_…`).
    pub env: Vec<(String, String)>,
    /// Load the demo catalogue.
    pub seed: bool,
    /// Pin the process to this CPU (with `taskset`).
    pub cpu: Option<usize>,
}

/// Starts one civic process and waits until it logs its addresses.
pub fn start(launch: Launch<'_>) -> anyhow::Result<Process> {
    let exe = std::env::current_exe().context("finding this program")?;
    let mut command = match launch.cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    command
        .arg("serve")
        .arg(format!("--target={}", launch.target))
        .arg("--data-dir")
        .arg(launch.data_dir)
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .env("CIVIC_LOG__FORMAT", "json")
        .env("CIVIC_LOG__LEVEL", "warn,civic=info")
        .env("CIVIC_AUTH__DEV_KEY", launch.dev_key)
        .env("CIVIC_AUTH__DEV_MODE", "true")
        .env("CIVIC_GATEWAY__RATE_PER_SECOND", "0")
        .env("CIVIC_GATEWAY__ADDRESS_RATE_PER_SECOND", "0")
        .envs(launch.env)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if launch.seed {
        command.arg("--seed");
    }
    if !launch.database_url.is_empty() {
        command.env("CIVIC_DATABASE_URL", launch.database_url);
    }
    let mut child = command.spawn().context("starting civic serve")?;
    let stdout = child.stdout.take().context("the server's output")?;
    let (tx, rx) = std::sync::mpsc::channel();
    // Read the log on a thread of its own, for as long as the server lives (a full pipe would stall it).
    std::thread::spawn(move || {
        let mut told = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if !told && let (Some(grpc), Some(http)) = (field(&line, "grpc_addr"), field(&line, "http_addr")) {
                let _ = tx.send((grpc, http));
                told = true;
            }
        }
    });
    let Ok((grpc, http)) = rx.recv_timeout(Duration::from_secs(60)) else {
        let _ = child.kill();
        bail!("civic serve --target={} did not report its addresses within 60 s", launch.target);
    };
    Ok(Process { child, grpc: grpc.parse()?, http: http.parse()? })
}

/// The value of `"name":"value"` in a JSON log line.
fn field(line: &str, name: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    value.get(name).or_else(|| value.get("fields").and_then(|f| f.get(name)))?.as_str().map(str::to_owned)
}

/// The resident memory of a process, in MiB (Linux).
pub fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb / 1024.0)
}
