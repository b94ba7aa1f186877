//! The resolved plan: what the configuration pipeline hands to the supervisor.
//!
//! Every value here is final: paths are absolute, times are durations, sizes are bytes,
//! the profile is merged. `hotrun config --json` prints this structure (see `to_json`),
//! and scripts and tests rely on that JSON's shape.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::sockets::ListenAddr;

/// The whole resolved configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Absolute path of the ecosystem file that was read.
    pub config: PathBuf,
    /// The profile chosen with `--env NAME`, if any.
    pub profile: Option<String>,
    /// The apps, in file order, after `--only` filtering.
    pub apps: Vec<AppPlan>,
}

/// PM2's two execution modes. hotrun runs both the same way (every instance is a process
/// of its own); the mode is kept because PM2 users read it in `status` and `config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecMode {
    Fork,
    Cluster,
}

impl ExecMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecMode::Fork => "fork",
            ExecMode::Cluster => "cluster",
        }
    }
}

/// The exact program and arguments an instance runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// What is exec'd: an interpreter (`node`), the script itself, or `sh` for PM2's
    /// script-with-spaces case.
    pub program: String,
    /// Everything after the program, verbatim.
    pub args: Vec<String>,
}

/// Where an app's output goes besides hotrun's own stdout.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogPlan {
    /// `out_file`: stdout lines (absolute path, before the `-<id>` suffix).
    pub out_file: Option<PathBuf>,
    /// `error_file`: stderr lines.
    pub error_file: Option<PathBuf>,
    /// `log_file`: both streams.
    pub log_file: Option<PathBuf>,
    /// `merge_logs`: one file per app instead of one per instance (`-<id>` suffix).
    pub merge_logs: bool,
    /// `log_date_format` (dayjs tokens, as PM2), or `time: true` -> `YYYY-MM-DDTHH:mm:ss`.
    pub date_format: Option<String>,
    /// `log_max_size` and `log_retain` (hotrun's keys): rotation of the files, when set.
    pub rotation: Option<crate::logs::rotate::Rotation>,
}

/// One app of the file, fully resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct AppPlan {
    pub name: String,
    /// The `script` as resolved: an absolute path when it names a file, else the command
    /// string as written (PM2's script-with-spaces case, run through `sh -c`).
    pub script: String,
    /// `args`, split as PM2 splits a string, verbatim when an array.
    pub args: Vec<String>,
    pub cwd: PathBuf,
    /// The interpreter as PM2 picks it; `None` when the script is exec'd itself.
    pub interpreter: Option<String>,
    /// `interpreter_args` / `node_args`.
    pub interpreter_args: Vec<String>,
    /// What to exec, derived from the fields above.
    pub command: Command,
    /// Always at least 1.
    pub instances: u32,
    pub exec_mode: ExecMode,
    pub wait_ready: bool,
    pub listen_timeout: Duration,
    pub kill_timeout: Duration,
    /// `drain_delay`: how long a replaced instance, out of the kernel's choice and with
    /// its accept queue empty, keeps serving before `kill_signal`.
    pub drain_delay: Duration,
    /// `kill_signal`, default SIGINT.
    pub kill_signal: Signal,
    pub shutdown_with_message: bool,
    /// Bytes.
    pub max_memory_restart: Option<u64>,
    pub autorestart: bool,
    pub max_restarts: u32,
    pub min_uptime: Duration,
    pub restart_delay: Duration,
    /// `exp_backoff_restart_delay`: the first delay of the growing sequence.
    pub exp_backoff_restart_delay: Option<Duration>,
    pub stop_exit_codes: Vec<i32>,
    /// Absolute paths; empty when watching is off.
    pub watch: Vec<PathBuf>,
    pub ignore_watch: Vec<String>,
    /// The debounce window of the watcher (hotrun's default 100 ms; PM2's 0 gives storms).
    pub watch_delay: Duration,
    /// `watch_options.usePolling`: poll at this interval instead of inotify.
    pub watch_poll: Option<Duration>,
    /// The merged profile values (`env` then `env_NAME`), plus PORT from `port`.
    /// Not the inherited environment.
    pub env: BTreeMap<String, String>,
    /// The variable that carries the instance id (`instance_var`, default NODE_APP_INSTANCE).
    pub instance_var: String,
    /// `cron_restart`: a rolling reload at each time this cron expression names (checked).
    pub cron_restart: Option<String>,
    /// `increment_var`: this variable is set to its value in `env` (0 if unset or not a
    /// number) plus the instance id, as PM2 does.
    pub increment_var: Option<String>,
    /// `port`, when set (also in `env` as PORT). hotrun binds it before the instances
    /// start and shares it with all of them.
    pub port: Option<u16>,
    /// `listen` (hotrun's key): sockets bound before the start and passed to every
    /// instance with `LISTEN_FDS` (systemd socket activation), in this order.
    pub listen: Vec<ListenAddr>,
    /// `max_surge` (hotrun's key): slots replaced at the same time in a reload (>= 1).
    pub max_surge: u32,
    /// `min_ready` (hotrun's key): a successor must stay up this long after its ready
    /// signal before its predecessor is stopped.
    pub min_ready: Duration,
    /// `ready_pattern` (hotrun's key): a regular expression; an output line that matches
    /// it is a ready signal.
    pub ready_pattern: Option<String>,
    /// `build` (hotrun's key): a command run with `sh -c` in the cwd before the first
    /// start and before every reload; the reload goes on only when it exits 0.
    pub build: Option<String>,
    /// `build_timeout`: how long a build may run (10 minutes by default).
    pub build_timeout: Duration,
    pub logs: LogPlan,
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl Plan {
    /// The `hotrun config --json` contract.
    pub fn to_json(&self) -> Value {
        json!({
            "config": self.config,
            "profile": self.profile,
            "apps": self.apps.iter().map(AppPlan::to_json).collect::<Vec<_>>(),
        })
    }
}

impl AppPlan {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "script": self.script,
            "args": self.args,
            "cwd": self.cwd,
            "interpreter": self.interpreter,
            "instances": self.instances,
            "exec_mode": self.exec_mode.as_str(),
            "wait_ready": self.wait_ready,
            "listen_timeout": ms(self.listen_timeout),
            "kill_timeout": ms(self.kill_timeout),
            "drain_delay": ms(self.drain_delay),
            "max_memory_restart": self.max_memory_restart,
            "autorestart": self.autorestart,
            "max_restarts": self.max_restarts,
            "min_uptime": ms(self.min_uptime),
            "restart_delay": ms(self.restart_delay),
            "watch": self.watch,
            "ignore_watch": self.ignore_watch,
            "watch_delay": ms(self.watch_delay),
            "env": self.env,
            "listen": self.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "max_surge": self.max_surge,
            "min_ready": ms(self.min_ready),
            "ready_pattern": self.ready_pattern,
            "build": self.build,
            "build_timeout": ms(self.build_timeout),
        });
        // Present when set.
        if let Some(r) = &self.logs.rotation {
            v["log_rotation"] = json!({"max_size": r.max_size, "retain": r.retain});
        }
        if let Some(cron) = &self.cron_restart {
            v["cron_restart"] = json!(cron);
        }
        if let Some(var) = &self.increment_var {
            v["increment_var"] = json!(var);
        }
        if let Some(format) = &self.logs.date_format {
            v["log_date_format"] = json!(format);
        }
        v
    }

    /// PM2's `pm_id` of this app's instance `id`: apps are numbered on from the previous
    /// app's last instance, as PM2's global counter does for a freshly started file.
    pub fn pm_id(plan: &Plan, app_index: usize, id: u32) -> u32 {
        plan.apps[..app_index]
            .iter()
            .map(|a| a.instances)
            .sum::<u32>()
            + id
    }
}
