//! The control socket's protocol: one JSON request per line from the client, one JSON
//! response per line back. Shared by the server (in the runner) and the client (the
//! `hotrun reload|restart|stop|status` commands), so the two cannot drift apart.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The longest request line accepted.
pub const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Apps, instances, pids, states.
    Status,
    /// A rolling reload of these apps (all when empty); with `wait`, its events come as
    /// JSON lines while it runs, and the response when it is done.
    Reload {
        #[serde(default)]
        apps: Vec<String>,
        #[serde(default)]
        wait: bool,
        /// Say what a reload would change; change nothing.
        #[serde(default)]
        dry_run: bool,
        /// Hold a canary this many ms (over the apps' `canary`), for this reload.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        canary: Option<u64>,
    },
    /// Stop, then start these apps (all when empty): not zero-downtime, as in PM2.
    Restart {
        #[serde(default)]
        apps: Vec<String>,
    },
    /// Stop every instance gracefully and exit.
    Stop,
    /// Follow reload events, one JSON line each, after the response.
    Events,
    /// Recent output (of one app, or all), then with `follow` new lines as they come,
    /// one JSON record per line after the response.
    Logs {
        #[serde(default)]
        app: Option<String>,
        #[serde(default = "default_lines")]
        lines: usize,
        #[serde(default)]
        follow: bool,
    },
    /// Exec `binary` (this hotrun's own by default) in this process, handing every
    /// instance and socket over (`hotrun upgrade`). Answered before the exec.
    Upgrade {
        #[serde(default)]
        binary: Option<std::path::PathBuf>,
        /// A test's: the new side refuses the state (1), and hotrun falls back; the old
        /// side refuses it too (2), and hotrun stops.
        #[serde(default)]
        refuse_state: u8,
    },
    /// From hotrun's preload module in an instance's process that has no IPC channel.
    Instance {
        token: String,
        event: String,
        #[serde(default)]
        port: Option<u16>,
    },
}

fn default_lines() -> usize {
    50
}

/// A response, one of four kinds. On the socket it is one JSON object: `{"ok": true,
/// "message": ...}`, `{"ok": true, "status": {...}}`, `{"ok": true, "lines": [...],
/// "files": [...]}` or `{"ok": false, "error": "..."}` (see `Wire`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "Wire", try_from = "Wire")]
pub enum Response {
    /// Done; a line for the user.
    Done(String),
    /// Not done; why, for the user.
    Failed(String),
    Status(Box<Status>),
    /// Output records (`hotrun logs`), and log files for the client to read back, for
    /// apps whose lines in memory are fewer than asked (their records are not in `lines`).
    Logs {
        lines: Vec<Value>,
        files: Vec<LogFile>,
    },
}

/// A response as it is written on the socket.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Wire {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<Box<Status>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lines: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    files: Option<Vec<LogFile>>,
}

impl From<Response> for Wire {
    fn from(r: Response) -> Wire {
        match r {
            Response::Done(message) => Wire {
                ok: true,
                message: Some(message),
                ..Wire::default()
            },
            Response::Failed(error) => Wire {
                ok: false,
                error: Some(error),
                ..Wire::default()
            },
            Response::Status(status) => Wire {
                ok: true,
                status: Some(status),
                ..Wire::default()
            },
            Response::Logs { lines, files } => Wire {
                ok: true,
                lines: Some(lines),
                files: (!files.is_empty()).then_some(files),
                ..Wire::default()
            },
        }
    }
}

impl TryFrom<Wire> for Response {
    type Error = String;

    fn try_from(w: Wire) -> Result<Response, String> {
        Ok(match w {
            Wire {
                ok: false, error, ..
            } => Response::Failed(error.unwrap_or_default()),
            Wire {
                status: Some(status),
                ..
            } => Response::Status(status),
            Wire {
                lines: Some(lines),
                files,
                ..
            } => Response::Logs {
                lines,
                files: files.unwrap_or_default(),
            },
            Wire {
                files: Some(files), ..
            } => Response::Logs {
                lines: Vec::new(),
                files,
            },
            Wire { message, .. } => Response::Done(message.unwrap_or_default()),
        })
    }
}

/// One step of a reload (its build, each instance started, ready, stopped or killed, its
/// end), as followers get it (`hotrun events`, a waiting `hotrun reload`: one JSON line
/// each) and as `--log-format json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadEvent {
    /// RFC 3339, local time, milliseconds.
    pub time: String,
    /// `event` and the step's own fields.
    #[serde(flatten)]
    pub step: ReloadStep,
    pub app: Option<String>,
    pub instance: Option<u32>,
    /// Always `hotrun` (log records of instances say `out` or `err`).
    pub stream: String,
    /// The step in the user's words, as the console says it.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ReloadStep {
    BuildStarted {
        command: String,
    },
    BuildDone {
        after_ms: u64,
    },
    BuildFailed {
        reason: String,
        last_lines: Vec<String>,
    },
    ReloadStarted {
        trigger: String,
        instances: usize,
        surge: usize,
    },
    /// A new instance started.
    Spawned {
        pid: i32,
    },
    /// A new instance is ready and takes its slot (`step` of `of`); `old_pid` is stopped.
    Ready {
        pid: i32,
        ready_by: String,
        after_ms: u64,
        old_pid: Option<i32>,
        step: usize,
        of: usize,
    },
    Stopped {
        pid: i32,
        /// How it ended: `exit code 0`, `signal SIGINT`, `gone`.
        exit: String,
    },
    /// SIGKILLed after its `kill_timeout`.
    Killed {
        pid: i32,
    },
    ReloadDone,
    ReloadFailed {
        reason: String,
        /// `build`, `plan`, `instance` or `abandoned`.
        failed: String,
    },
    /// hotrun itself was upgraded (`hotrun upgrade`): every instance kept; `refused`
    /// when the new binary did not take over (this is the old one again).
    Upgraded {
        from: String,
        version: String,
        refused: Option<String>,
    },
}

/// What `status` answers (and `hotrun status --json` prints): every app and instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// hotrun's pid.
    pub pid: u32,
    /// The ecosystem file it runs.
    pub config: std::path::PathBuf,
    /// hotrun is stopping (or waits its `shutdown_delay` before it does): not ready.
    #[serde(default)]
    pub stopping: bool,
    /// The running binary's version.
    #[serde(default)]
    pub version: String,
    /// The last upgrade of this hotrun (`hotrun upgrade`), if any.
    #[serde(default)]
    pub upgrade: Option<UpgradeStatus>,
    pub apps: Vec<AppStatus>,
}

/// How the last `hotrun upgrade` ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpgradeStatus {
    /// RFC 3339, local time.
    pub at: String,
    /// The version it came from.
    pub from: String,
    /// Whether the new binary took over; if not, why (this binary is the old one).
    pub ok: bool,
    #[serde(default)]
    pub refused: Option<String>,
}

impl Status {
    /// Ready: hotrun is not stopping and every instance is online.
    pub fn is_ready(&self) -> bool {
        !self.stopping && self.not_ready().is_empty()
    }

    /// Every instance that is not online, as `web|1 is starting`; empty when all are.
    pub fn not_ready(&self) -> Vec<String> {
        self.apps
            .iter()
            .flat_map(|app| {
                app.instances
                    .iter()
                    .filter(|i| i.state != InstanceState::Online)
                    .map(move |i| format!("{}|{} is {}", app.name, i.id, i.state.as_str()))
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppStatus {
    pub name: String,
    /// `fork` or `cluster`, as written.
    pub exec_mode: String,
    pub cron_restart: Option<CronStatus>,
    /// A rolling reload runs.
    pub reloading: bool,
    /// Reloads done (successful ones).
    pub reloads: u32,
    pub last_reload: Option<LastReload>,
    pub instances: Vec<InstanceStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CronStatus {
    pub expression: String,
    /// The next run, RFC 3339, local time.
    pub next: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastReload {
    /// What started it: `hotrun reload`, `SIGHUP`, `watch`, `memory`, ...
    pub trigger: String,
    pub result: ReloadResult,
    /// When it ended, RFC 3339, local time.
    pub at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadResult {
    Ok,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub id: u32,
    /// None while no process runs (waiting to start, stopped, errored).
    pub pid: Option<i32>,
    pub state: InstanceState,
    /// How it showed it was ready, while online: message, notify, listen, pattern, uptime.
    pub ready_by: Option<String>,
    /// Restarts after an exit.
    pub restarts: u32,
    /// Times a reload's new instance took the slot.
    pub reloads: u32,
    /// CPU of its process group over the last interval.
    pub cpu_percent: Option<f64>,
    /// CPU time of its process group since it started.
    pub cpu_seconds: Option<f64>,
    /// Resident memory of its process group.
    pub memory_bytes: Option<u64>,
    pub uptime_ms: Option<u64>,
    /// Its readiness probe's last result, for an app with `readiness_probe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeStatus>,
    /// Its liveness probe's last result, for an app with `liveness_probe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<ProbeStatus>,
}

/// A probe's last result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeStatus {
    pub ok: bool,
    /// What it answered (`200 OK`) or why it failed (`503 Service Unavailable`, `no answer
    /// within 1000 ms`).
    pub detail: String,
    /// When, RFC 3339, local time.
    pub at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    Starting,
    Online,
    Draining,
    Stopping,
    Errored,
    Stopped,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Starting => "starting",
            InstanceState::Online => "online",
            InstanceState::Draining => "draining",
            InstanceState::Stopping => "stopping",
            InstanceState::Errored => "errored",
            InstanceState::Stopped => "stopped",
        }
    }
}

/// One file an app's output goes to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogFile {
    pub app: String,
    /// The app's place in the file (its colour).
    pub app_index: usize,
    /// `web`, or `web|0` for one instance's file.
    pub label: String,
    pub stream: FileStream,
    pub path: std::path::PathBuf,
}

/// What a log file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStream {
    Stdout,
    Stderr,
    /// `log_file`: both, in order.
    Both,
}

impl Response {
    pub fn ok(message: impl Into<String>) -> Response {
        Response::Done(message.into())
    }

    pub fn err(error: impl Into<String>) -> Response {
        Response::Failed(error.into())
    }

    pub fn status(status: Status) -> Response {
        Response::Status(Box::new(status))
    }

    pub fn lines(lines: Vec<Value>, files: Vec<LogFile>) -> Response {
        Response::Logs { lines, files }
    }

    /// The status, for a `Status` request; otherwise what the answer said instead.
    pub fn into_status(self) -> Result<Status, String> {
        match self {
            Response::Status(status) => Ok(*status),
            Response::Failed(error) => Err(error),
            _ => Err("no status in the answer".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_response_is_one_json_object_and_reads_back() {
        let file = LogFile {
            app: "web".into(),
            app_index: 0,
            label: "web".into(),
            stream: FileStream::Both,
            path: "/tmp/web.log".into(),
        };
        let cases = [
            (
                Response::ok("reload requested"),
                r#"{"ok":true,"message":"reload requested"}"#,
            ),
            (
                Response::err("no app x"),
                r#"{"ok":false,"error":"no app x"}"#,
            ),
            (
                Response::lines(vec![serde_json::json!({"line": "a"})], vec![]),
                r#"{"ok":true,"lines":[{"line":"a"}]}"#,
            ),
            (
                Response::lines(vec![], vec![file]),
                r#"{"ok":true,"lines":[],"files":[{"app":"web","app_index":0,"label":"web","stream":"both","path":"/tmp/web.log"}]}"#,
            ),
        ];
        for (response, wire) in cases {
            assert_eq!(serde_json::to_string(&response).unwrap(), wire);
            assert_eq!(serde_json::from_str::<Response>(wire).unwrap(), response);
        }
        // An answer with nothing but `ok` (an older hotrun's) is done, without a line.
        let bare: Response = serde_json::from_str(r#"{"ok":true}"#).unwrap();
        assert_eq!(bare, Response::Done(String::new()));
        assert_eq!(
            Response::err("stopping").into_status(),
            Err("stopping".to_string())
        );
    }

    #[test]
    fn requests_round_trip_and_unknown_ones_are_refused() {
        let table = [
            (r#"{"cmd":"status"}"#, Some(Request::Status)),
            (
                r#"{"cmd":"reload","apps":["web"],"wait":true}"#,
                Some(Request::Reload {
                    apps: vec!["web".into()],
                    wait: true,
                    dry_run: false,
                    canary: None,
                }),
            ),
            (
                r#"{"cmd":"reload"}"#,
                Some(Request::Reload {
                    apps: vec![],
                    wait: false,
                    dry_run: false,
                    canary: None,
                }),
            ),
            (r#"{"cmd":"stop"}"#, Some(Request::Stop)),
            (
                r#"{"cmd":"instance","token":"4","event":"ready"}"#,
                Some(Request::Instance {
                    token: "4".into(),
                    event: "ready".into(),
                    port: None,
                }),
            ),
            (r#"{"cmd":"explode"}"#, None),
            (r#"{"cmd":"reload","bogus":1}"#, None),
            ("not json", None),
        ];
        for (line, want) in table {
            assert_eq!(serde_json::from_str::<Request>(line).ok(), want, "{line}");
        }
    }

    #[test]
    fn reload_events_are_flat_json_lines_that_read_back() {
        let event = ReloadEvent {
            time: "2026-12-03T17:00:00.000+00:00".into(),
            step: ReloadStep::Ready {
                pid: 42,
                ready_by: "message".into(),
                after_ms: 120,
                old_pid: Some(41),
                step: 1,
                of: 2,
            },
            app: Some("web".into()),
            instance: Some(0),
            stream: "hotrun".into(),
            message: "web|0 reload 1/2: new pid 42 ready (message) in 120 ms".into(),
        };
        let line = serde_json::to_string(&event).unwrap();
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["event"], "ready");
        assert_eq!(value["old_pid"], 41);
        assert_eq!(value["instance"], 0);
        assert_eq!(serde_json::from_str::<ReloadEvent>(&line).unwrap(), event);
        let done = r#"{"time":"t","event":"reload_done","app":"web","instance":null,"stream":"hotrun","message":"m"}"#;
        let done: ReloadEvent = serde_json::from_str(done).unwrap();
        assert_eq!(done.step, ReloadStep::ReloadDone);
        // A response is not an event.
        assert!(
            serde_json::from_str::<ReloadEvent>(r#"{"ok":true,"message":"reload done"}"#).is_err()
        );
    }
}
