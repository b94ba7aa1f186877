//! Test helpers: run the real `hotrun` binary on fixtures, collect its output, wait on
//! events (a line appears, a process is gone) under generous deadlines, and kill it on
//! drop so no test leaves a process behind, even when it fails.

#![allow(dead_code)]

pub mod cli;
pub mod http;
pub mod node_load;
pub mod procfs;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const HOTRUN: &str = env!("CARGO_BIN_EXE_hotrun");

/// A deadline generous enough for a small, busy machine.
pub const SLOW: Duration = Duration::from_secs(30);

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

pub fn app(name: &str) -> String {
    fixtures().join("apps").join(name).display().to_string()
}

/// Writes `ecosystem.config.js` with `body` into a fresh temp dir.
pub fn config_dir(body: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ecosystem.config.js"), body).expect("write config");
    dir
}

/// Output collected from both streams, one line at a time, with a condvar to wait on.
#[derive(Default)]
struct Lines {
    lines: Mutex<Vec<String>>,
    changed: Condvar,
}

pub struct Hotrun {
    pub child: Child,
    lines: Arc<Lines>,
    readers: Vec<thread::JoinHandle<()>>,
}

impl Hotrun {
    /// Starts `hotrun ARGS` in `cwd`.
    pub fn start(cwd: &Path, args: &[&str]) -> Hotrun {
        Hotrun::start_with(Command::new(HOTRUN).args(args).current_dir(cwd))
    }

    pub fn start_with(cmd: &mut Command) -> Hotrun {
        Hotrun::start_with_stdin(cmd.stdin(Stdio::null()))
    }

    /// Like `start_with`, keeping the stdin `cmd` was given.
    pub fn start_with_stdin(cmd: &mut Command) -> Hotrun {
        Hotrun::spawn(cmd, true)
    }

    /// Like `start_with`, with hotrun's stdout (the instances' output) thrown away: only
    /// its stderr is collected.
    pub fn start_quiet(cmd: &mut Command) -> Hotrun {
        Hotrun::spawn(cmd.stdin(Stdio::null()), false)
    }

    fn spawn(cmd: &mut Command, collect_stdout: bool) -> Hotrun {
        let stdout = if collect_stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        let mut child = cmd
            .env("NO_COLOR", "1")
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hotrun");
        let lines = Arc::new(Lines::default());
        let mut readers = vec![collect(child.stderr.take().unwrap(), lines.clone())];
        if let Some(out) = child.stdout.take() {
            readers.push(collect(out, lines.clone()));
        }
        Hotrun {
            child,
            lines,
            readers,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits until a line containing `needle` appears; returns that line.
    pub fn wait_for(&self, needle: &str) -> String {
        self.wait_for_n(needle, 1).pop().unwrap()
    }

    /// Waits until `n` lines contain `needle`; returns them.
    pub fn wait_for_n(&self, needle: &str, n: usize) -> Vec<String> {
        let deadline = Instant::now() + SLOW;
        let mut lines = self.lines.lines.lock().unwrap();
        loop {
            let found: Vec<String> = lines
                .iter()
                .filter(|l| l.contains(needle))
                .cloned()
                .collect();
            if found.len() >= n {
                return found;
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "timed out waiting for {n} line(s) with {needle:?}; output so far:\n{}",
                    lines.join("\n")
                );
            }
            lines = self
                .lines
                .changed
                .wait_timeout(lines, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// Everything printed so far.
    pub fn output(&self) -> String {
        self.lines.lines.lock().unwrap().join("\n")
    }

    pub fn count(&self, needle: &str) -> usize {
        self.lines
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).expect("signal hotrun");
    }

    /// Waits for hotrun to exit, and for its output to be read to the end.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + SLOW;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return status;
            }
            if Instant::now() >= deadline {
                panic!("hotrun did not exit; output:\n{}", self.output());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Hotrun {
    fn drop(&mut self) {
        // SIGKILL: the guard process then kills every instance group.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(stream: impl Read + Send + 'static, lines: Arc<Lines>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            lines.lines.lock().unwrap().push(line);
            lines.changed.notify_all();
        }
    })
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => state_of(&stat) != Some('Z'),
        Err(_) => false,
    }
}

fn state_of(stat: &str) -> Option<char> {
    let after = &stat[stat.rfind(')')? + 2..];
    after.chars().next()
}

/// The parent pid and state of `pid`, from /proc.
pub fn parent_and_state(pid: i32) -> Option<(i32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

/// Every (pid, state, comm) whose parent is `ppid`.
pub fn children_of(ppid: i32) -> Vec<(i32, char, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        if let Some((parent, state)) = parent_and_state(pid) {
            if parent == ppid {
                out.push((pid, state, comm));
            }
        }
    }
    out
}

/// Polls `cond` until it holds or the deadline passes; panics with `what` then.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + SLOW;
    while !cond() {
        if Instant::now() >= deadline {
            panic!("timed out waiting until {what}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Reads `key=NUMBER` out of a line.
pub fn field(line: &str, key: &str) -> i32 {
    let start = line
        .find(&format!("{key}="))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        + key.len()
        + 1;
    line[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("bad {key}= in {line:?}"))
}

/// Runs `hotrun ARGS` (a client command) in `cwd` and waits for it.
pub fn hotrun_cmd(cwd: &Path, args: &[&str]) -> std::process::Output {
    Command::new(HOTRUN)
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run hotrun")
}

/// `hotrun status --json` in `cwd`.
pub fn status(cwd: &Path) -> serde_json::Value {
    let out = hotrun_cmd(cwd, &["status", "--json"]);
    assert!(
        out.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status is JSON")
}

/// The pids of app `app`'s instances, by slot.
pub fn pids(status: &serde_json::Value, app: &str) -> Vec<i64> {
    app_status(status, app)["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["pid"].as_i64().unwrap_or(0))
        .collect()
}

pub fn app_status<'a>(status: &'a serde_json::Value, app: &str) -> &'a serde_json::Value {
    status["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == app)
        .unwrap_or_else(|| panic!("no app {app} in {status}"))
}

/// Waits until every instance of every app is online; returns the status.
pub fn wait_online(cwd: &Path) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let deadline = Instant::now() + SLOW;
    loop {
        let out = hotrun_cmd(cwd, &["status", "--json"]);
        if out.status.success() {
            last = serde_json::from_slice(&out.stdout).unwrap();
            let all_online = last["apps"].as_array().unwrap().iter().all(|a| {
                a["instances"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|i| i["state"] == "online")
            });
            if all_online {
                return last;
            }
        }
        if Instant::now() >= deadline {
            panic!("not all instances came online; last status: {last}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The most instances alive at once, from fixtures/apps/http.js's EVENTS_FILE lines
/// (`start|exit <id> <pid> <ms>`).
pub fn most_alive_at_once(events: &Path) -> usize {
    let text = std::fs::read_to_string(events).unwrap();
    let mut points: Vec<(u64, i32)> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let delta = if f[0] == "start" { 1 } else { -1 };
            Some((f[3].parse().ok()?, delta))
        })
        .collect();
    // Exits before starts at the same millisecond.
    points.sort();
    let (mut alive, mut most) = (0i32, 0i32);
    for (_, d) in points {
        alive += d;
        most = most.max(alive);
    }
    most as usize
}

/// A fresh folder with fixtures/apps/http.js as `server.js` and an ecosystem file with one
/// app `web` (wait_ready, HTTP_PORT = `port`); `extra` is added to the app's keys.
pub fn http_dir(port: u16, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(app("http.js"), dir.path().join("server.js")).unwrap();
    let config = format!(
        "module.exports = {{ apps: [{{ name: 'web', script: 'server.js', wait_ready: true,
           env: {{ HTTP_PORT: {port} }}, {extra} }}] }};\n"
    );
    std::fs::write(dir.path().join("ecosystem.config.js"), config).unwrap();
    dir
}

/// Waits until app `app` has had `n` reloads and none runs, then holds that count through
/// a quiet second: a late extra reload (a loop, a double trigger) fails the test.
pub fn wait_reloads_held(dir: &Path, app: &str, n: i64) {
    let count = |st: &serde_json::Value| app_status(st, app)["reloads"].as_i64().unwrap();
    wait_until(&format!("{n} reload(s) of {app} are done"), || {
        let st = status(dir);
        count(&st) == n && app_status(&st, app)["reloading"] == false
    });
    let until = std::time::Instant::now() + Duration::from_secs(1);
    while std::time::Instant::now() < until {
        let st = status(dir);
        assert_eq!(count(&st), n, "a reload more than {n} followed: {st}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A test that cannot run on this machine: a failure under CI (`CI` set), where every
/// prerequisite is installed; elsewhere it says why it did not run.
pub fn cannot_run(why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "cannot run under CI: {why}"
    );
    eprintln!("not run: {why}");
}

/// inotify watches the runner holds, from /proc/PID/fdinfo.
pub fn inotify_watches(pid: i32) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
    {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        n += text
            .lines()
            .filter(|l| l.starts_with("inotify wd:"))
            .count();
    }
    n
}
