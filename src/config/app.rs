//! One app object -> [`AppPlan`], with PM2's semantics: key classification and warnings,
//! type checks with positions, paths made absolute, the interpreter and the command chosen,
//! defaults filled in, the profile merged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Map, Value};

use super::env::{self, Layer};
use super::error::ConfigError;
use super::fields::classify;
use super::locate::absolute;
use super::position::{Origin, Seg, Target};
use super::units;
use crate::plan::{AppPlan, Command, ExecMode, LogPlan};
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

/// The interpreter PM2 picks for a script by its extension.
fn interpreter_for(script: &Path) -> Option<&'static str> {
    let ext = script.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "js" | "cjs" | "mjs" => "node",
        "ts" | "tsx" => "bun",
        "sh" => "bash",
        "py" => "python3",
        "rb" => "ruby",
        "php" => "php",
        "pl" => "perl",
        _ => return None,
    })
}

/// `name` found in PATH, as PM2's `which` fallback does for scripts like `npm`.
fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

/// How the script is run.
enum Script {
    /// A file (absolute path).
    File(PathBuf),
    /// PM2's script-with-spaces case: a shell command line.
    Shell(String),
}

/// Resolves the app object at `path`.
pub fn resolve_app(
    ctx: &Ctx,
    path: &[Seg],
    obj: &Map<String, Value>,
    warnings: &mut Vec<String>,
) -> Result<Resolved, ConfigError> {
    let origin = ctx.origin;
    let (f, profiles) = classify(origin, path, obj, warnings);

    // cwd: relative to the config file's folder.
    let cwd = match f.string("cwd")? {
        None => ctx.config_dir.to_path_buf(),
        Some((k, s)) => {
            let dir = absolute(ctx.config_dir, Path::new(s));
            if !dir.is_dir() {
                let what = if dir.exists() {
                    "not a folder"
                } else {
                    "no such folder"
                };
                return Err(ConfigError::invalid(origin.msg(
                    &f.path_of(k),
                    Target::Value,
                    Some(k),
                    &format!(": {}: {what}", dir.display()),
                ))
                .with_help("cwd is relative to the ecosystem file's folder"));
            }
            dir
        }
    };

    // interpreter as written: Some(None) = 'none'.
    let explicit_interp: Option<Option<String>> = match f.string("interpreter")? {
        None => None,
        Some((_, "none")) => Some(None),
        Some((k, s)) if s.starts_with("node@") => {
            warnings.push(origin.msg(
                &f.path_of(k),
                Target::Value,
                Some(k),
                ": node versions through nvm are not supported; using node from PATH",
            ));
            Some(Some("node".to_string()))
        }
        Some((_, s)) => Some(Some(s.to_string())),
    };

    // script: a file relative to cwd, a program in PATH, or a command with spaces.
    let (sk, sv) = match f.get("script") {
        Some((k, Value::String(s))) if !s.trim().is_empty() => (k, s.as_str()),
        Some((k, v)) => return Err(f.bad(k, v, "a file path or a command")),
        None => {
            return Err(ConfigError::invalid(origin.msg(
                path,
                Target::Value,
                None,
                ": script is required (the file to run, e.g. script: 'server.js')",
            )))
        }
    };
    let candidate = absolute(&cwd, Path::new(sv));
    let script = if candidate.is_dir() {
        return Err(ConfigError::invalid(origin.msg(
            &f.path_of(sk),
            Target::Value,
            Some(sk),
            &format!(": {}: is a folder, not a file", candidate.display()),
        )));
    } else if candidate.exists() {
        Script::File(candidate)
    } else if sv.trim().contains(char::is_whitespace) && explicit_interp.is_none() {
        Script::Shell(sv.trim().to_string())
    } else if let Some(found) = (!sv.contains('/')).then(|| which(sv)).flatten() {
        Script::File(found)
    } else {
        return Err(ConfigError::invalid(origin.msg(
            &f.path_of(sk),
            Target::Value,
            Some(sk),
            &format!(": {}: no such file", candidate.display()),
        ))
        .with_help(format!(
            "script is resolved against the app's cwd ({})",
            cwd.display()
        )));
    };

    let interpreter = match (&explicit_interp, &script) {
        (Some(i), _) => i.clone(),
        (None, Script::Shell(_)) => None,
        (None, Script::File(p)) => {
            let i = interpreter_for(p).map(str::to_string);
            if i.is_none() && !is_executable(p) {
                warnings.push(origin.msg(
                    &f.path_of(sk),
                    Target::Value,
                    Some(sk),
                    &format!(
                        ": {} is not executable and has no known extension; set interpreter",
                        p.display()
                    ),
                ));
            }
            i
        }
    };
    let interpreter_args = f.words("interpreter_args", "a string or an array of strings")?;
    if interpreter.is_none() && !interpreter_args.is_empty() {
        if let Some((k, _)) = f.get("interpreter_args") {
            warnings.push(origin.msg(
                &f.path_of(k),
                Target::Key,
                Some(k),
                ": ignored: the script runs without an interpreter",
            ));
        }
    }
    let args = f.words("args", "a string or an array of strings")?;

    // The command. For PM2's script-with-spaces case the line is run by `sh -c`, and `args`
    // follow as `$1 $2 ...` (`sh -c LINE sh ARGS...`): they are never re-parsed by the shell.
    let (script_str, command) = match &script {
        Script::Shell(line) => {
            let mut a = vec!["-c".to_string(), line.clone(), "sh".to_string()];
            a.extend(args.iter().cloned());
            (
                line.clone(),
                Command {
                    program: "sh".into(),
                    args: a,
                },
            )
        }
        Script::File(p) => {
            let s = p.display().to_string();
            let command = match &interpreter {
                Some(i) => {
                    let mut a = interpreter_args.clone();
                    a.push(s.clone());
                    a.extend(args.iter().cloned());
                    Command {
                        program: i.clone(),
                        args: a,
                    }
                }
                None => Command {
                    program: s.clone(),
                    args: args.clone(),
                },
            };
            (s, command)
        }
    };

    // name: default from the script's file stem (the whole line for a shell command).
    let (name, name_path) = match f.string("name")? {
        Some((k, n)) => (n.to_string(), f.path_of(k)),
        None => {
            let n = match &script {
                Script::Shell(line) => line.clone(),
                Script::File(_) => Path::new(sv)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| sv.to_string()),
            };
            (n, path.to_vec())
        }
    };

    // instances and exec_mode (PM2's default rule: cluster when instances is given as
    // >= 1, 0 or -1 and the interpreter is node or bun).
    let raw_instances = match f.get("instances") {
        None => None,
        Some((k, v)) => Some(units::parse_instances(v).map_err(|e| f.bad(k, v, e))?),
    };
    let instances = raw_instances.map_or(1, |r| units::resolve_instances(r, ctx.cpus));
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
    let node_like = matches!(interpreter.as_deref(), Some("node" | "bun"));
    let exec_mode = written_mode.unwrap_or(match raw_instances {
        Some(r) if (r >= 1 || r == 0 || r == -1) && node_like => ExecMode::Cluster,
        _ => ExecMode::Fork,
    });

    let max_memory_restart = match f.get("max_memory_restart") {
        None => None,
        Some((k, v)) => {
            let (bytes, bare) = units::parse_size(v).map_err(|e| f.bad(k, v, e))?;
            if bare && bytes < 1 << 20 {
                warnings.push(origin.msg(
                    &f.path_of(k),
                    Target::Value,
                    Some(k),
                    &format!(": {bytes} means {bytes} bytes (a number without unit is bytes); write '{bytes}M' for megabytes"),
                ));
            }
            Some(bytes)
        }
    };

    let stop_exit_codes = match f.get("stop_exit_codes") {
        None => Vec::new(),
        Some((k, v)) => {
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
            codes.ok_or_else(|| f.bad_because(k, v, expected, &hint))?
        }
    };

    let watch = match f.get("watch") {
        None | Some((_, Value::Bool(false))) => Vec::new(),
        Some((_, Value::Bool(true))) => vec![cwd.clone()],
        Some((_, Value::String(s))) => vec![absolute(&cwd, Path::new(s))],
        // PM2: `watch: []` watches the cwd, like `true`.
        Some((_, Value::Array(items))) if items.is_empty() => vec![cwd.clone()],
        Some((k, Value::Array(items))) => f
            .list(k, items, "true, false, a path or an array of paths")?
            .iter()
            .map(|s| absolute(&cwd, Path::new(s)))
            .collect(),
        Some((k, v)) => return Err(f.bad(k, v, "true, false, a path or an array of paths")),
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

    let port = f.parse("port", None, |v| {
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
    })?;

    // hotrun's rollout keys.
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

    // `listen` (hotrun's key): sockets bound by hotrun and passed as LISTEN_FDS.
    let listen = match f.get("listen") {
        None => Vec::new(),
        Some((k, v)) => {
            const E: &str =
                "a port or address:port, or an array of them (e.g. [\"8080\", \"127.0.0.1:9090\"])";
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
            out
        }
    };

    // env, lowest first: `env_file` (hotrun's key), `env`, `deploy.NAME.env`, the selected
    // `env_NAME`; then PORT from `port` (so that `port` and the PORT the app sees always
    // agree, as the plan promises).
    let from_files = env_files(ctx, &f, &cwd)?;
    let mut layers = Vec::new();
    if let Some((k, v)) = f.get("env") {
        let map = v
            .as_object()
            .ok_or_else(|| f.bad(k, v, "an object of variable names and values"))?;
        layers.push(Layer {
            map,
            path: f.path_of(k),
        });
    }
    if let Some((map, p)) = &ctx.deploy_env {
        layers.push(Layer {
            map,
            path: p.clone(),
        });
    }
    let selected = ctx
        .profile
        .and_then(|p| profiles.iter().find(|(name, _, _)| name == p));
    if let Some((_, k, v)) = selected {
        let map = v
            .as_object()
            .ok_or_else(|| f.bad(k, v, "an object of variable names and values"))?;
        layers.push(Layer {
            map,
            path: f.path_of(k),
        });
    }
    let mut env = env::merge(from_files, &layers, origin, warnings)?;
    if let Some(p) = port {
        let port_key = f.get("port").map_or("port", |(k, _)| k);
        if let Some(old) = env
            .insert("PORT".to_string(), p.to_string())
            .filter(|old| *old != p.to_string())
        {
            warnings.push(origin.msg(
                &f.path_of(port_key),
                Target::Value,
                Some(port_key),
                &format!(": {p} overrides PORT={old} from env"),
            ));
        }
    }

    let instance_var = f
        .string("instance_var")?
        .map_or("NODE_APP_INSTANCE".to_string(), |(_, s)| s.to_string());
    // PM2's `cron_restart` (alias `cron`): 0 or '0' turns it off, as in PM2.
    let cron_restart = match f.get("cron_restart") {
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
    };
    // PM2's `increment_var`: the variable is set to its value in env (0 when unset or not
    // a number) plus the instance id.
    let increment_var = match f.get("increment_var") {
        None => None,
        Some((_, Value::String(s))) if !s.is_empty() && !s.contains(['=', '\0']) => {
            Some(s.to_string())
        }
        Some((k, v)) => return Err(f.bad(k, v, "the name of an environment variable")),
    };

    let log_path = |canon: &str| -> Result<Option<PathBuf>, ConfigError> {
        match f.get(canon) {
            None | Some((_, Value::Bool(false))) => Ok(None),
            Some((_, Value::String(s))) if s == "NULL" || s == "/dev/null" => Ok(None),
            Some((_, Value::String(s))) if !s.is_empty() => Ok(Some(absolute(&cwd, Path::new(s)))),
            // `log_file: true` = PM2's `<name>.log`, placed in the app's cwd (hotrun has no
            // PM2_HOME folder).
            Some((_, Value::Bool(true))) if canon == "log_file" => {
                Ok(Some(cwd.join(format!("{}.log", safe_name(&name)))))
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
    };
    let time = f.boolean("time", false)?;
    // `log_date_format: false` is in files PM2 runs: no date, as PM2 does (it refuses true).
    let date_format = match f.get("log_date_format") {
        Some((_, Value::Bool(false) | Value::Null)) => None,
        _ => match f.string("log_date_format")? {
            Some((_, s)) => Some(s.to_string()),
            None if time => Some("YYYY-MM-DDTHH:mm:ss".to_string()),
            None => None,
        },
    };
    // PM2's quirk: merge_logs defaults to true when exec_mode (as written) is not cluster
    // and instances is unset, 0 or 'max'.
    let merge_default =
        written_mode != Some(ExecMode::Cluster) && matches!(raw_instances, None | Some(0));
    // Rotation (hotrun's keys, pm2-logrotate's names): only when log_max_size is set;
    // log_retain defaults to pm2-logrotate's 30.
    let rotation = match f.get("log_max_size") {
        None => None,
        Some((k, v)) => {
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
            Some(crate::logs::rotate::Rotation {
                max_size: bytes,
                retain,
                compress: f.boolean("log_compress", false)?,
            })
        }
    };
    let logs = LogPlan {
        out_file: log_path("out_file")?,
        error_file: log_path("error_file")?,
        log_file: log_path("log_file")?,
        merge_logs: f.boolean("merge_logs", merge_default)?,
        date_format,
        rotation,
    };

    let exp_backoff = f.ms("exp_backoff_restart_delay", 0)?;
    let plan = AppPlan {
        name,
        script: script_str,
        args,
        cwd,
        interpreter,
        interpreter_args,
        command,
        instances,
        exec_mode,
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
        watch,
        ignore_watch,
        watch_delay: f.ms("watch_delay", 100)?,
        watch_poll,
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
        logs,
    };
    Ok(Resolved {
        plan,
        name_path,
        profiles: profiles.iter().map(|(n, _, _)| n.clone()).collect(),
        has_profile: selected.is_some() || ctx.deploy_env.is_some(),
    })
}

/// The variables of the app's `env_file` entries, in order (later files win).
/// A path with a leading `?` is optional: skipped when the file does not exist.
fn env_files(
    ctx: &Ctx,
    f: &super::fields::Fields,
    cwd: &Path,
) -> Result<BTreeMap<String, String>, ConfigError> {
    const E: &str = "a file path or an array of file paths (a leading ? marks an optional file)";
    let mut vars = BTreeMap::new();
    let Some((k, v)) = f.get("env_file") else {
        return Ok(vars);
    };
    let entries: Vec<(Vec<Seg>, &str)> = match v {
        Value::String(s) => vec![(f.path_of(k), s.as_str())],
        Value::Array(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let mut p = f.path_of(k);
                p.push(Seg::Index(i));
                match item {
                    Value::String(s) => out.push((p, s.as_str())),
                    other => {
                        return Err(ConfigError::invalid(ctx.origin.msg(
                            &p,
                            Target::Value,
                            Some(&format!("{k}[{i}]")),
                            &format!(" must be a file path (got {})", units::show(other)),
                        )))
                    }
                }
            }
            out
        }
        other => return Err(f.bad(k, other, E)),
    };
    for (p, written) in entries {
        let (rel, optional) = env::env_file_spec(written);
        if rel.trim().is_empty() {
            return Err(f.bad(k, v, E));
        }
        let file = absolute(cwd, Path::new(rel));
        let fail = |detail: String| {
            ConfigError::invalid(ctx.origin.msg(&p, Target::Value, Some(k), &detail))
        };
        match env::read_env_file(&file) {
            Ok(pairs) => vars.extend(pairs),
            Err(env::EnvFileError::Missing) if optional => {}
            Err(env::EnvFileError::Missing) => {
                return Err(fail(format!(": {}: no such file", file.display())).with_help(
                    format!(
                        "env_file is relative to the app's cwd ({}); write '?{rel}' for a file that may be missing",
                        cwd.display()
                    ),
                ))
            }
            Err(env::EnvFileError::Unreadable(e)) => {
                return Err(fail(format!(": {}: cannot read: {e}", file.display())))
            }
            Err(env::EnvFileError::Syntax(line, e)) => {
                let at = match line {
                    Some(l) => format!("{}:{l}", file.display()),
                    None => file.display().to_string(),
                };
                return Err(fail(format!(": {at}: {e}"))
                    .with_help("env files use dotenv syntax: KEY=value lines, # comments, quotes, an optional export prefix"));
            }
        }
    }
    Ok(vars)
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
