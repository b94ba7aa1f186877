//! The resolved plan: what the configuration pipeline hands to the supervisor.
//!
//! Every value here is final: paths are absolute, times are durations, sizes are bytes,
//! the profile is merged. `hotrun config --json` prints this structure, every field of it
//! (serde; times in ms, signals by name, addresses as written), and scripts and tests
//! rely on that JSON's shape.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::sockets::ListenAddr;

/// The whole resolved configuration file.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Command {
    /// What is exec'd: an interpreter (`node`), the script itself, or `sh` for PM2's
    /// script-with-spaces case.
    pub program: String,
    /// Everything after the program, verbatim.
    pub args: Vec<String>,
}

/// Where an app's output goes besides hotrun's own stdout.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
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
    #[serde(rename = "log_date_format")]
    pub date_format: Option<String>,
    /// `log_max_size` and `log_retain` (hotrun's keys): rotation of the files, when set.
    #[serde(rename = "log_rotation")]
    pub rotation: Option<crate::logs::rotate::Rotation>,
}

/// One app of the file, fully resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    #[serde(serialize_with = "ms")]
    pub listen_timeout: Duration,
    #[serde(serialize_with = "ms")]
    pub kill_timeout: Duration,
    /// `drain_delay`: how long a replaced instance, out of the kernel's choice and with
    /// its accept queue empty, keeps serving before `kill_signal`.
    #[serde(serialize_with = "ms")]
    pub drain_delay: Duration,
    /// `kill_signal`, default SIGINT.
    #[serde(serialize_with = "signal_name")]
    pub kill_signal: Signal,
    pub shutdown_with_message: bool,
    /// Bytes.
    pub max_memory_restart: Option<u64>,
    pub autorestart: bool,
    pub max_restarts: u32,
    #[serde(serialize_with = "ms")]
    pub min_uptime: Duration,
    #[serde(serialize_with = "ms")]
    pub restart_delay: Duration,
    /// `exp_backoff_restart_delay`: the first delay of the growing sequence.
    #[serde(serialize_with = "opt_ms")]
    pub exp_backoff_restart_delay: Option<Duration>,
    pub stop_exit_codes: Vec<i32>,
    /// Absolute paths; empty when watching is off.
    pub watch: Vec<PathBuf>,
    pub ignore_watch: Vec<String>,
    /// The debounce window of the watcher (hotrun's default 100 ms; PM2's 0 gives storms).
    #[serde(serialize_with = "ms")]
    pub watch_delay: Duration,
    /// `watch_options.usePolling`: poll at this interval instead of inotify.
    #[serde(serialize_with = "opt_ms")]
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
    #[serde(serialize_with = "as_written")]
    pub listen: Vec<ListenAddr>,
    /// `max_surge` (hotrun's key): slots replaced at the same time in a reload (>= 1).
    pub max_surge: u32,
    /// `min_ready` (hotrun's key): a successor must stay up this long after its ready
    /// signal before its predecessor is stopped.
    #[serde(serialize_with = "ms")]
    pub min_ready: Duration,
    /// `ready_pattern` (hotrun's key): a regular expression; an output line that matches
    /// it is a ready signal.
    pub ready_pattern: Option<String>,
    /// `build` (hotrun's key): a command run with `sh -c` in the cwd before the first
    /// start and before every reload; the reload goes on only when it exits 0.
    pub build: Option<String>,
    /// `build_timeout`: how long a build may run (10 minutes by default).
    #[serde(serialize_with = "ms")]
    pub build_timeout: Duration,
    /// `shutdown_delay` (hotrun's key): after SIGTERM, how long every instance keeps
    /// serving (hotrun not ready any more) before they stop; hotrun waits the longest.
    #[serde(serialize_with = "ms")]
    pub shutdown_delay: Duration,
    /// `readiness_probe` (hotrun's key): ready only once it passes.
    pub readiness_probe: Option<crate::probe::ProbePlan>,
    /// `liveness_probe` (hotrun's key): failing `failure_threshold` times in a row, the
    /// instance is replaced.
    pub liveness_probe: Option<crate::probe::ProbePlan>,
    /// `canary: { hold }` (hotrun's key): a reload replaces one slot, holds this long while
    /// watching it, then rolls the rest (or rolls the canary back).
    #[serde(serialize_with = "opt_ms")]
    pub canary: Option<Duration>,
    #[serde(flatten)]
    pub logs: LogPlan,
}

pub(crate) fn ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

fn opt_ms<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    d.map(|d| d.as_millis() as u64).serialize(s)
}

fn signal_name<S: Serializer>(sig: &Signal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(sig.as_str())
}

fn as_written<S: Serializer>(addrs: &[ListenAddr], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(addrs.iter().map(|a| a.to_string()))
}

impl Plan {
    /// The `hotrun config --json` contract.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a plan always serializes")
    }
}

impl AppPlan {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_json_holds_every_field_of_the_plan() {
        let app = crate::supervisor::tests_support::app();
        // Exhaustive: a field added to the plan does not compile here until it is named
        // in `fields` below too.
        #[rustfmt::skip]
        let AppPlan {
            name: _, script: _, args: _, cwd: _, interpreter: _, interpreter_args: _,
            command: _, instances: _, exec_mode: _, wait_ready: _, listen_timeout: _,
            kill_timeout: _, drain_delay: _, kill_signal: _, shutdown_with_message: _,
            max_memory_restart: _, autorestart: _, max_restarts: _, min_uptime: _,
            restart_delay: _, exp_backoff_restart_delay: _, stop_exit_codes: _, watch: _,
            ignore_watch: _, watch_delay: _, watch_poll: _, env: _, instance_var: _,
            cron_restart: _, increment_var: _, port: _, listen: _, max_surge: _,
            min_ready: _, ready_pattern: _, build: _, build_timeout: _, shutdown_delay: _,
            readiness_probe: _, liveness_probe: _, canary: _,
            logs: LogPlan { out_file: _, error_file: _, log_file: _, merge_logs: _,
                date_format: _, rotation: _ },
        } = &app;
        #[rustfmt::skip]
        let fields = [
            "name", "script", "args", "cwd", "interpreter", "interpreter_args", "command",
            "instances", "exec_mode", "wait_ready", "listen_timeout", "kill_timeout",
            "drain_delay", "kill_signal", "shutdown_with_message", "max_memory_restart",
            "autorestart", "max_restarts", "min_uptime", "restart_delay",
            "exp_backoff_restart_delay", "stop_exit_codes", "watch", "ignore_watch",
            "watch_delay", "watch_poll", "env", "instance_var", "cron_restart",
            "increment_var", "port", "listen", "max_surge", "min_ready", "ready_pattern",
            "build", "build_timeout", "shutdown_delay", "readiness_probe",
            "liveness_probe", "canary",
            // LogPlan, flattened
            "out_file", "error_file", "log_file", "merge_logs", "log_date_format",
            "log_rotation",
        ];
        let plan = Plan {
            config: "/srv/ecosystem.config.js".into(),
            profile: None,
            apps: vec![app],
        };
        let json = plan.to_json();
        let keys: std::collections::BTreeSet<&str> = json["apps"][0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, fields.into_iter().collect());
        assert_eq!(json["apps"][0]["kill_signal"], "SIGINT");
        assert!(json["apps"][0]["kill_timeout"].is_u64(), "times in ms");
    }
}
