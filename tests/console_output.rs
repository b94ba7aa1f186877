//! hotrun's console (its stdout and stderr) when nobody reads it: `hotrun | less`, a
//! stalled `tee` or log shipper. The runner keeps supervising: the control socket answers,
//! a killed instance is restarted and serves, a reload works, SIGTERM stops it; the log
//! files keep every line; once the console is read again, hotrun says what it dropped.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::http::{free_port, get};
use common::*;

/// Kills hotrun on drop (its guard then stops the instances), even when the test fails.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `f`, or a failure naming `what` when it takes longer than SLOW: a runner that hangs
/// must fail the test, not hang it.
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(SLOW)
        .unwrap_or_else(|_| panic!("{what} did not finish within {SLOW:?}: hotrun is stuck"))
}

fn command(dir: &Path, args: &'static [&'static str]) -> Output {
    let dir = dir.to_path_buf();
    within(&format!("hotrun {}", args.join(" ")), move || {
        hotrun_cmd(&dir, args)
    })
}

/// The log file at `path` ends with `tail`.
fn ends_with(path: &Path, tail: &str) -> bool {
    std::fs::read(path).is_ok_and(|b| b.ends_with(tail.as_bytes()))
}

#[test]
fn a_console_nobody_reads_never_stalls_the_runner() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(app("flood.js"), dir.path().join("flood.js")).unwrap();
    std::fs::copy(app("http.js"), dir.path().join("server.js")).unwrap();
    // 2 x 10 MB of output: far more than a pipe (64 KiB) and hotrun's console queue hold.
    let config = format!(
        "module.exports = {{ apps: [
           {{ name: 'chat', script: 'flood.js', instances: 2, out_file: './chat.log',
              env: {{ FLOOD_LINES: 100000, FLOOD_WIDTH: 100 }} }},
           {{ name: 'web', script: 'server.js', instances: 2, wait_ready: true,
              env: {{ HTTP_PORT: {port} }} }} ] }};\n"
    );
    std::fs::write(dir.path().join("ecosystem.config.js"), config).unwrap();

    // stdout and stderr into one pipe that is not read until the end (`2>&1 | stalled`).
    let (mut console, writer) = std::io::pipe().unwrap();
    let child = Command::new(HOTRUN)
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .spawn()
        .expect("start hotrun");
    let mut hotrun = Running(child);

    // Every line reaches the log files although the console is stuck.
    let logs = [dir.path().join("chat-0.log"), dir.path().join("chat-1.log")];
    wait_until(
        "both flooding instances wrote all their lines to their log files",
        || logs.iter().all(|p| ends_with(p, "flood done\n")),
    );
    for log in &logs {
        let text = std::fs::read_to_string(log).unwrap();
        assert_eq!(
            text.lines().count(),
            100_001,
            "{} lost lines",
            log.display()
        );
    }

    // The control socket answers.
    let out = command(dir.path(), &["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let before = pids(&status, "web");

    // A killed instance is reaped, restarted, and serves.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(before[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let d = dir.path().to_path_buf();
    wait_until("the killed instance is replaced", || {
        let out = within("hotrun status", {
            let d = d.clone();
            move || hotrun_cmd(&d, &["status", "--json"])
        });
        out.status.success() && {
            let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let now = pids(&s, "web");
            now[0] != before[0]
                && now[0] != 0
                && app_status(&s, "web")["instances"][0]["state"] == "online"
        }
    });
    for _ in 0..5 {
        let body = within("a request", move || get(port)).expect("answered");
        assert!(body.contains("pid"), "{body}");
    }

    // A reload runs to its end.
    let out = command(dir.path(), &["reload", "web"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Once the console is read again, hotrun says what it dropped.
    let (tx, rx) = mpsc::channel::<String>();
    thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = console.read(&mut buf) {
            if n == 0
                || tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
            {
                break;
            }
        }
    });
    let deadline = Instant::now() + SLOW;
    let mut seen = String::new();
    while !seen.contains("console lines dropped") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.max(Duration::from_millis(1))) {
            Ok(chunk) => seen.push_str(&chunk),
            Err(_) => panic!(
                "no notice of dropped lines; the console's end:\n{}",
                &seen[seen.len().saturating_sub(2000)..]
            ),
        }
        // Keep only the tail: the notice is one line.
        if seen.len() > 1 << 20 {
            seen.drain(..seen.len() - 4096);
        }
    }

    // SIGTERM stops it, gracefully.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(hotrun.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + SLOW;
    let code = loop {
        if let Some(status) = hotrun.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "hotrun did not stop on SIGTERM");
        thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success(), "hotrun exited with {code}");
}
