//! Load from outside: fixtures/load/client.js, an independent HTTP client written with
//! Node's own `http` and `net` modules, run as a child process. Many concurrent clients,
//! keep-alive or a new connection per request, optionally slow to send, each request
//! answered, failed or counted as hung after a timeout.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};

use serde::Deserialize;

/// How the clients behave.
#[derive(Debug, Clone, Copy)]
pub struct Clients {
    pub count: usize,
    pub keep_alive: bool,
    /// Milliseconds between connect and sending the request (0: at once, through Node's
    /// http client).
    pub slow_ms: u64,
    /// A request without an answer after this long is counted as hung.
    pub timeout_ms: u64,
}

impl Clients {
    pub fn new(count: usize) -> Clients {
        Clients {
            count,
            keep_alive: false,
            slow_ms: 0,
            timeout_ms: 5000,
        }
    }

    pub fn keep_alive(self) -> Clients {
        Clients {
            keep_alive: true,
            ..self
        }
    }

    pub fn slow(self, ms: u64) -> Clients {
        Clients {
            slow_ms: ms,
            ..self
        }
    }
}

/// What the client counted.
#[derive(Debug, Default, Deserialize)]
pub struct Report {
    pub requests: u64,
    pub ok: u64,
    pub failed: u64,
    pub hung: u64,
    pub retries: u64,
    pub errors: BTreeMap<String, u64>,
    /// Answers per pid of the instance that answered.
    pub pids: BTreeMap<String, u64>,
    pub samples: Vec<String>,
}

impl Report {
    /// The share of answers of the busiest instance, in percent.
    pub fn busiest_share(&self) -> f64 {
        let most = self.pids.values().copied().max().unwrap_or(0);
        100.0 * most as f64 / self.ok.max(1) as f64
    }
}

/// A running client, stopped by `finish`.
pub struct NodeLoad {
    child: Child,
    out: BufReader<ChildStdout>,
}

fn command(port: u16, c: Clients, duration_ms: u64) -> Command {
    let script = super::fixtures().join("load").join("client.js");
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .args(["--port", &port.to_string()])
        .args(["--clients", &c.count.to_string()])
        .args(["--timeout", &c.timeout_ms.to_string()])
        .args(["--duration", &duration_ms.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if c.keep_alive {
        cmd.arg("--keep-alive");
    }
    if c.slow_ms > 0 {
        cmd.args(["--slow", &c.slow_ms.to_string()]);
    }
    cmd
}

impl NodeLoad {
    /// Starts the clients and returns once each has had an answer (or after 10 s).
    pub fn start(port: u16, c: Clients) -> NodeLoad {
        let mut child = command(port, c, 0)
            .stdin(Stdio::piped())
            .spawn()
            .expect("start node fixtures/load/client.js");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).expect("read the load client");
        assert!(
            line.contains("running"),
            "the load client did not start: {line:?}"
        );
        NodeLoad { child, out }
    }

    /// Stops the clients, waits for their requests in flight, and returns the counts.
    pub fn finish(mut self) -> Report {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.write_all(b"stop\n");
        }
        read_report(&mut self.out)
    }
}

impl Drop for NodeLoad {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the clients for `duration_ms` and returns the counts.
pub fn run_for(port: u16, c: Clients, duration_ms: u64) -> Report {
    let mut child = command(port, c, duration_ms)
        .stdin(Stdio::null())
        .spawn()
        .expect("start node fixtures/load/client.js");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let report = read_report(&mut out);
    let _ = child.wait();
    report
}

fn read_report(out: &mut BufReader<ChildStdout>) -> Report {
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).expect("read the load client");
        assert!(n > 0, "the load client exited without a report");
        if line.contains("\"requests\"") {
            return serde_json::from_str(&line).expect("the load client's report is JSON");
        }
    }
}
