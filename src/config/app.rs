//! One app object -> [`AppPlan`], with PM2's semantics: key classification and warnings,
//! type checks with positions, paths made absolute, defaults filled in, the profile merged.
//! What the app runs (script, interpreter, command, name) is `command`'s part; its
//! environment is `app_env`'s.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Map, Value};

use super::app_env::env_of;
use super::command::run_of;
use super::error::ConfigError;
use super::fields::{classify, Fields};
use super::locate::absolute;
use super::position::{Origin, Seg, Target};
use super::units;
use crate::logs::rotate::Rotation;
use crate::plan::{AppPlan, ExecMode, LogPlan};
use crate::sockets::ListenAddr;

/// What resolving one app needs from the file level.
pub struct Ctx<'a> {
    pub origin: &'a Origin,
    /// The config file's folder: the default cwd, and what `cwd` is relative to.
    pub config_dir: &'a Path,
    pub profile: Option<&'a str>,
    pub cpus: u32,
    /// `deploy.<profile>.env` of the file, and where it is, when `--env` names a deploy
    /// target that has one: layered between `env` and `env_<profile>`, as PM2 does.
    pub deploy_env: Option<(&'a Map<String, Value>, Vec<Seg>)>,
}

/// A resolved app and what the file level checks across apps.
pub struct Resolved {
    pub plan: AppPlan,
    /// Where the name is (its value, or the app when the name is derived).
    pub name_path: Vec<Seg>,
    /// The `env_*` profiles this app defines.
    pub profiles: Vec<String>,
    /// Whether the app defines the selected profile.
    pub has_profile: bool,
}

/// Resolves the app object at `path`. The keys are read in this order (the first bad one
/// is the error): what it runs, instances, restart limits, watch, port, rollout, listen,
/// env, instance and cron keys, logs, then the times and flags in the order of the plan.
pub fn resolve_app(
    ctx: &Ctx,
    path: &[Seg],
    obj: &Map<String, Value>,
    warnings: &mut Vec<String>,
) -> Result<Resolved, ConfigError> {
    let (f, profiles) = classify(ctx.origin, path, obj, warnings);
    let run = run_of(ctx, path, &f, warnings)?;
    let scale = scale_of(&f, ctx.cpus, run.interpreter.as_deref())?;
    let max_memory_restart = max_memory_of(&f, warnings)?;
    let stop_exit_codes = stop_exit_codes_of(&f)?;
    let watch = watch_keys(&f, &run.cwd)?;
    let port = port_of(&f)?;
    let (max_surge, ready_pattern) = rollout_keys(&f)?;
    let listen = listen_of(&f)?;
    let selected = ctx
        .profile
        .and_then(|p| profiles.iter().find(|(name, _, _)| name == p));
    let env = env_of(ctx, &f, selected, &run.cwd, port, warnings)?;
    let instance_var = f
        .string("instance_var")?
        .map_or("NODE_APP_INSTANCE".to_string(), |(_, s)| s.to_string());
    let cron_restart = cron_of(&f)?;
    let increment_var = increment_var_of(&f)?;
    let logs = logs_of(&f, &run.cwd, &run.name, scale.merge_logs_default())?;
    let exp_backoff = f.ms("exp_backoff_restart_delay", 0)?;
    let plan = AppPlan {
        name: run.name,
        script: run.script,
        args: run.args,
        cwd: run.cwd,
        interpreter: run.interpreter,
        interpreter_args: run.interpreter_args,
        command: run.command,
        instances: scale.instances,
        exec_mode: scale.exec_mode,
        wait_ready: f.boolean("wait_ready", false)?,
        listen_timeout: f.ms("listen_timeout", 3000)?,
        kill_timeout: f.ms("kill_timeout", 1600)?,
        drain_delay: f.ms("drain_delay", 100)?,
        kill_signal: f.parse("kill_signal", Signal::SIGINT, units::parse_signal)?,
        shutdown_with_message: f.boolean("shutdown_with_message", false)?,
        max_memory_restart,
        autorestart: f.boolean("autorestart", true)?,
        max_restarts: f.parse("max_restarts", 16, units::parse_count)?,
        min_uptime: Duration::from_millis(f.parse("min_uptime", 1000, units::parse_min_uptime)?),
        restart_delay: f.ms("restart_delay", 0)?,
        exp_backoff_restart_delay: (!exp_backoff.is_zero()).then_some(exp_backoff),
        stop_exit_codes,
        cron_restart,
        watch: watch.paths,
        ignore_watch: watch.ignore,
        watch_delay: f.ms("watch_delay", 100)?,
        watch_poll: watch.poll,
        env,
        instance_var,
        increment_var,
        port,
        listen,
        max_surge,
        min_ready: f.ms("min_ready", 0)?,
        ready_pattern,
        build: f.string("build")?.map(|(_, s)| s.to_string()),
        build_timeout: f.ms("build_timeout", 600_000)?,
        shutdown_delay: f.ms("shutdown_delay", 0)?,
        readiness_probe: super::probe::probe_of(&f, "readiness_probe")?,
        liveness_probe: super::probe::probe_of(&f, "liveness_probe")?,
        canary: super::probe::canary_of(&f)?,
        logs,
    };
    Ok(Resolved {
        plan,
        name_path: run.name_path,
        profiles: profiles.iter().map(|(n, _, _)| n.clone()).collect(),
        has_profile: selected.is_some() || ctx.deploy_env.is_some(),
    })
}

/// `instances` and `exec_mode`: as written, and what they come to.
struct Scale {
    raw_instances: Option<i64>,
    instances: u32,
    written_mode: Option<ExecMode>,
    exec_mode: ExecMode,
}

impl Scale {
    /// PM2's quirk: merge_logs defaults to true when exec_mode (as written) is not cluster
    /// and instances is unset, 0 or 'max'.
    fn merge_logs_default(&self) -> bool {
        self.written_mode != Some(ExecMode::Cluster) && matches!(self.raw_instances, None | Some(0))
    }
}

/// instances and exec_mode (PM2's default rule: cluster when instances is given as
/// >= 1, 0 or -1 and the interpreter is node or bun).
fn scale_of(f: &Fields, cpus: u32, interpreter: Option<&str>) -> Result<Scale, ConfigError> {
    let raw_instances = match f.get("instances") {
        None => None,
        Some((k, v)) => Some(units::parse_instances(v).map_err(|e| f.bad(k, v, e))?),
    };
    let instances = raw_instances.map_or(1, |r| units::resolve_instances(r, cpus));
    let written_mode = match f.get("exec_mode") {
        None => None,
        Some((_, Value::String(s))) if matches!(s.as_str(), "fork" | "fork_mode") => {
            Some(ExecMode::Fork)
        }
        Some((_, Value::String(s))) if matches!(s.as_str(), "cluster" | "cluster_mode") => {
            Some(ExecMode::Cluster)
        }
        Some((k, v)) => {
            return Err(f.bad(k, v, "'fork' or 'cluster' (or 'fork_mode', 'cluster_mode')"))
        }
    };
    let node_like = matches!(interpreter, Some("node" | "bun"));
    let exec_mode = written_mode.unwrap_or(match raw_instances {
        Some(r) if (r >= 1 || r == 0 || r == -1) && node_like => ExecMode::Cluster,
        _ => ExecMode::Fork,
    });
    Ok(Scale {
        raw_instances,
        instances,
        written_mode,
        exec_mode,
    })
}

/// `max_memory_restart` in bytes; a bare number under a megabyte gets a warning.
fn max_memory_of(f: &Fields, warnings: &mut Vec<String>) -> Result<Option<u64>, ConfigError> {
    let Some((k, v)) = f.get("max_memory_restart") else {
        return Ok(None);
    };
    let (bytes, bare) = units::parse_size(v).map_err(|e| f.bad(k, v, e))?;
    if bare && bytes < 1 << 20 {
        warnings.push(f.msg(
            k,
            Target::Value,
            &format!(": {bytes} means {bytes} bytes (a number without unit is bytes); write '{bytes}M' for megabytes"),
        ));
    }
    Ok(Some(bytes))
}

/// `stop_exit_codes`: one exit code or an array of them.
fn stop_exit_codes_of(f: &Fields) -> Result<Vec<i32>, ConfigError> {
    let Some((k, v)) = f.get("stop_exit_codes") else {
        return Ok(Vec::new());
    };
    let one = |x: &Value| -> Option<i32> {
        match x {
            Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    };
    let codes: Option<Vec<i32>> = match v {
        Value::Array(items) => items.iter().map(one).collect(),
        other => one(other).map(|c| vec![c]),
    };
    // PM2 (7.0.4) refuses a string that is not one number, such as '[0]', too.
    let hint = match v {
        Value::String(s) if s.trim_start().starts_with('[') => format!(
            ": write stop_exit_codes: {}, without quotes (PM2 refuses the string too)",
            s.trim()
        ),
        _ => String::new(),
    };
    let expected = "an exit code or an array of exit codes";
    codes.ok_or_else(|| f.bad_because(k, v, expected, &hint))
}

/// The watch keys, as the plan has them.
struct Watch {
    /// `watch`: the paths, relative to cwd.
    paths: Vec<PathBuf>,
    /// `watch_options`: the polling interval, when polling is asked for.
    poll: Option<Duration>,
    /// `ignore_watch`.
    ignore: Vec<String>,
}

/// `watch`, `watch_options` and `ignore_watch`, in that order.
fn watch_keys(f: &Fields, cwd: &Path) -> Result<Watch, ConfigError> {
    const PATHS: &str = "true, false, a path or an array of paths";
    let watch = match f.get("watch") {
        None | Some((_, Value::Bool(false))) => Vec::new(),
        Some((_, Value::Bool(true))) => vec![cwd.to_path_buf()],
        Some((_, Value::String(s))) => vec![absolute(cwd, Path::new(s))],
        // PM2: `watch: []` watches the cwd, like `true`.
        Some((_, Value::Array(items))) if items.is_empty() => vec![cwd.to_path_buf()],
        Some((k, Value::Array(items))) => f
            .list(k, items, PATHS)?
            .iter()
            .map(|s| absolute(cwd, Path::new(s)))
            .collect(),
        Some((k, v)) => return Err(f.bad(k, v, PATHS)),
    };
    // `watch_options` (chokidar's): `usePolling` with its `interval` (ms, default 100).
    let watch_poll = match f.get("watch_options") {
        None => None,
        Some((k, Value::Object(o))) => {
            let polling = match o.get("usePolling") {
                None | Some(Value::Null) => false,
                Some(v) => units::parse_bool(v).map_err(|e| f.bad(k, v, e))?,
            };
            let interval = match o.get("interval") {
                None | Some(Value::Null) => 100,
                Some(v) => units::parse_ms(v).map_err(|e| f.bad(k, v, e))?,
            };
            polling.then(|| Duration::from_millis(interval.max(10)))
        }
        Some((k, v)) => {
            return Err(f.bad(k, v, "an object like { usePolling: true, interval: 500 }"))
        }
    };
    let ignore_watch = match f.get("ignore_watch") {
        None => Vec::new(),
        Some((_, Value::String(s))) => vec![s.clone()],
        Some((k, Value::Array(items))) => f.list(k, items, "a pattern or an array of patterns")?,
        Some((k, v)) => return Err(f.bad(k, v, "a pattern or an array of patterns")),
    };
    Ok(Watch {
        paths: watch,
        poll: watch_poll,
        ignore: ignore_watch,
    })
}

/// `port`: 1 to 65535, a number or its text.
fn port_of(f: &Fields) -> Result<Option<u16>, ConfigError> {
    f.parse("port", None, |v| {
        const E: &str = "a port number (1-65535)";
        let n = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        n.and_then(|n| u16::try_from(n).ok())
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or(E)
    })
}

/// hotrun's rollout keys: `max_surge` (1 or more) and `ready_pattern` (a regex).
fn rollout_keys(f: &Fields) -> Result<(u32, Option<String>), ConfigError> {
    let max_surge = f.parse("max_surge", 1, |v| {
        units::parse_count(v).and_then(|n| {
            if n == 0 {
                Err("a number of instances, 1 or more")
            } else {
                Ok(n)
            }
        })
    })?;
    let ready_pattern = match f.string("ready_pattern")? {
        None => None,
        Some((k, pattern)) => match regex::Regex::new(pattern) {
            Ok(_) => Some(pattern.to_string()),
            Err(e) => {
                let first = e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or("")
                    .trim()
                    .to_string();
                let v = Value::String(pattern.to_string());
                return Err(f.bad(k, &v, &format!("a regular expression ({first})")));
            }
        },
    };
    Ok((max_surge, ready_pattern))
}

/// `listen` (hotrun's key): sockets bound by hotrun and passed as LISTEN_FDS; repeats dropped.
fn listen_of(f: &Fields) -> Result<Vec<ListenAddr>, ConfigError> {
    const E: &str =
        "a port or address:port, or an array of them (e.g. [\"8080\", \"127.0.0.1:9090\"])";
    let Some((k, v)) = f.get("listen") else {
        return Ok(Vec::new());
    };
    let items = match v {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        let text = match item {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(f.bad(k, v, E)),
        };
        let addr = text.parse::<ListenAddr>().map_err(|_| f.bad(k, item, E))?;
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    Ok(out)
}

/// PM2's `cron_restart` (alias `cron`): 0 or '0' turns it off, as in PM2.
fn cron_of(f: &Fields) -> Result<Option<String>, ConfigError> {
    Ok(match f.get("cron_restart") {
        None => None,
        Some((_, Value::Number(n))) if n.as_f64() == Some(0.0) => None,
        Some((_, Value::String(s))) if s.trim() == "0" => None,
        Some((k, v @ Value::String(s))) => match crate::schedule::parse(s) {
            Ok(_) => Some(s.trim().to_string()),
            Err(why) => {
                let hint = format!(": {why}");
                let expected = "a cron expression (5 fields, or 6 with seconds first)";
                return Err(f.bad_because(k, v, expected, &hint));
            }
        },
        Some((k, v)) => return Err(f.bad(k, v, "a cron expression, or 0 for none")),
    })
}

/// PM2's `increment_var`: the variable is set to its value in env (0 when unset or not
/// a number) plus the instance id.
fn increment_var_of(f: &Fields) -> Result<Option<String>, ConfigError> {
    match f.get("increment_var") {
        None => Ok(None),
        Some((_, Value::String(s))) if !s.is_empty() && !s.contains(['=', '\0']) => {
            Ok(Some(s.to_string()))
        }
        Some((k, v)) => Err(f.bad(k, v, "the name of an environment variable")),
    }
}

/// The log keys, in this order: `time` and `log_date_format`, rotation, the three files,
/// `merge_logs`.
fn logs_of(
    f: &Fields,
    cwd: &Path,
    name: &str,
    merge_default: bool,
) -> Result<LogPlan, ConfigError> {
    let date_format = date_format_of(f)?;
    let rotation = rotation_of(f)?;
    Ok(LogPlan {
        out_file: log_path(f, cwd, name, "out_file")?,
        error_file: log_path(f, cwd, name, "error_file")?,
        log_file: log_path(f, cwd, name, "log_file")?,
        merge_logs: f.boolean("merge_logs", merge_default)?,
        date_format,
        rotation,
    })
}

/// The log file `canon` names, relative to cwd; none for false, 'NULL' or '/dev/null'.
fn log_path(
    f: &Fields,
    cwd: &Path,
    name: &str,
    canon: &str,
) -> Result<Option<PathBuf>, ConfigError> {
    match f.get(canon) {
        None | Some((_, Value::Bool(false))) => Ok(None),
        Some((_, Value::String(s))) if s == "NULL" || s == "/dev/null" => Ok(None),
        Some((_, Value::String(s))) if !s.is_empty() => Ok(Some(absolute(cwd, Path::new(s)))),
        // `log_file: true` = PM2's `<name>.log`, placed in the app's cwd (hotrun has no
        // PM2_HOME folder).
        Some((_, Value::Bool(true))) if canon == "log_file" => {
            Ok(Some(cwd.join(format!("{}.log", safe_name(name)))))
        }
        Some((k, v)) => Err(f.bad(
            k,
            v,
            if canon == "log_file" {
                "a file path or true"
            } else {
                "a file path"
            },
        )),
    }
}

/// The date format of log lines: `log_date_format`, or PM2's default with `time: true`.
fn date_format_of(f: &Fields) -> Result<Option<String>, ConfigError> {
    let time = f.boolean("time", false)?;
    // `log_date_format: false` is in files PM2 runs: no date, as PM2 does (it refuses true).
    Ok(match f.get("log_date_format") {
        Some((_, Value::Bool(false) | Value::Null)) => None,
        _ => match f.string("log_date_format")? {
            Some((_, s)) => Some(s.to_string()),
            None if time => Some("YYYY-MM-DDTHH:mm:ss".to_string()),
            None => None,
        },
    })
}

/// Rotation (hotrun's keys, pm2-logrotate's names): only when log_max_size is set;
/// log_retain defaults to pm2-logrotate's 30.
fn rotation_of(f: &Fields) -> Result<Option<Rotation>, ConfigError> {
    let Some((k, v)) = f.get("log_max_size") else {
        return Ok(None);
    };
    let bytes = match units::parse_size(v) {
        Ok((0, _)) => return Err(f.bad(k, v, "a size above 0 (e.g. '10M')")),
        Ok((bytes, _)) => bytes,
        Err(e) => return Err(f.bad(k, v, e)),
    };
    let retain = match f.get("log_retain") {
        None => 30,
        Some((k, v)) => match v.as_u64() {
            Some(n @ 1..=1000) => n as u32,
            _ => return Err(f.bad(k, v, "a number of rotated files to keep, 1 to 1000")),
        },
    };
    Ok(Some(Rotation {
        max_size: bytes,
        retain,
        compress: f.boolean("log_compress", false)?,
    }))
}

/// PM2's file-name form of an app name: chars outside `[A-Za-z0-9.-]` become `-`.
fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}
