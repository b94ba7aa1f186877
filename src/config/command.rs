//! What one app runs: its cwd, the script (a file, a program found in PATH, or PM2's
//! command line with spaces), the interpreter (as written, or PM2's pick by extension),
//! the command line, and the name (derived from the script when none is written).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::app::Ctx;
use super::error::ConfigError;
use super::fields::Fields;
use super::locate::absolute;
use super::position::{Origin, Seg, Target};
use crate::plan::Command;

/// What an app runs, and its name.
pub struct Run {
    pub cwd: PathBuf,
    /// The script as the plan shows it: the file's absolute path, or the command line.
    pub script: String,
    pub args: Vec<String>,
    pub interpreter: Option<String>,
    pub interpreter_args: Vec<String>,
    pub command: Command,
    pub name: String,
    /// Where the name is (its value, or the app when the name is derived).
    pub name_path: Vec<Seg>,
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

/// Whether any of the file's execute bits is set.
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

/// How `args` and `interpreter_args` may be written.
const WORDS: &str = "a string or an array of strings";

/// Resolves, in this order, `cwd`, `interpreter`, `script`, `interpreter_args`, `args`
/// and `name` of the app at `path`.
pub fn run_of(
    ctx: &Ctx,
    path: &[Seg],
    f: &Fields,
    warnings: &mut Vec<String>,
) -> Result<Run, ConfigError> {
    let cwd = cwd_of(ctx.config_dir, f)?;
    // interpreter as written: Some(None) = 'none'.
    let written = written_interpreter(f, warnings)?;
    let (sk, sv) = script_value(ctx.origin, path, f)?;
    let script = script_of(f, sk, sv, &cwd, written.is_some())?;
    let interpreter = match written {
        Some(i) => i,
        None => default_interpreter(f, sk, &script, warnings),
    };
    let interpreter_args = f.words("interpreter_args", WORDS)?;
    if interpreter.is_none() && !interpreter_args.is_empty() {
        if let Some((k, _)) = f.get("interpreter_args") {
            warnings.push(f.msg(
                k,
                Target::Key,
                ": ignored: the script runs without an interpreter",
            ));
        }
    }
    let args = f.words("args", WORDS)?;
    let command = command_of(&script, interpreter.as_deref(), &interpreter_args, &args);
    let (name, name_path) = name_of(path, f, &script, sv)?;
    Ok(Run {
        cwd,
        script: match script {
            Script::Shell(line) => line,
            Script::File(p) => p.display().to_string(),
        },
        args,
        interpreter,
        interpreter_args,
        command,
        name,
        name_path,
    })
}

/// `cwd`, relative to the config file's folder (that folder when unset): a folder.
fn cwd_of(config_dir: &Path, f: &Fields) -> Result<PathBuf, ConfigError> {
    let Some((k, s)) = f.string("cwd")? else {
        return Ok(config_dir.to_path_buf());
    };
    let dir = absolute(config_dir, Path::new(s));
    if !dir.is_dir() {
        let what = if dir.exists() {
            "not a folder"
        } else {
            "no such folder"
        };
        return Err(ConfigError::invalid(f.msg(
            k,
            Target::Value,
            &format!(": {}: {what}", dir.display()),
        ))
        .with_help("cwd is relative to the ecosystem file's folder"));
    }
    Ok(dir)
}

/// `interpreter` as written: `Some(None)` for 'none'; node from PATH for `node@VERSION`.
fn written_interpreter(
    f: &Fields,
    warnings: &mut Vec<String>,
) -> Result<Option<Option<String>>, ConfigError> {
    Ok(match f.string("interpreter")? {
        None => None,
        Some((_, "none")) => Some(None),
        Some((k, s)) if s.starts_with("node@") => {
            warnings.push(f.msg(
                k,
                Target::Value,
                ": node versions through nvm are not supported; using node from PATH",
            ));
            Some(Some("node".to_string()))
        }
        Some((_, s)) => Some(Some(s.to_string())),
    })
}

/// The `script` key as written and its text, which must not be blank.
fn script_value<'a>(
    origin: &Origin,
    path: &[Seg],
    f: &Fields<'a>,
) -> Result<(&'a str, &'a str), ConfigError> {
    match f.get("script") {
        Some((k, Value::String(s))) if !s.trim().is_empty() => Ok((k, s.as_str())),
        Some((k, v)) => Err(f.bad(k, v, "a file path or a command")),
        None => Err(ConfigError::invalid(origin.msg(
            path,
            Target::Value,
            None,
            ": script is required (the file to run, e.g. script: 'server.js')",
        ))),
    }
}

/// The script `sv` (at key `sk`): a file relative to cwd, a command with spaces (when no
/// interpreter is written), or a program in PATH.
fn script_of(
    f: &Fields,
    sk: &str,
    sv: &str,
    cwd: &Path,
    interpreter_written: bool,
) -> Result<Script, ConfigError> {
    let candidate = absolute(cwd, Path::new(sv));
    if candidate.is_dir() {
        Err(ConfigError::invalid(f.msg(
            sk,
            Target::Value,
            &format!(": {}: is a folder, not a file", candidate.display()),
        )))
    } else if candidate.exists() {
        Ok(Script::File(candidate))
    } else if sv.trim().contains(char::is_whitespace) && !interpreter_written {
        Ok(Script::Shell(sv.trim().to_string()))
    } else if let Some(found) = (!sv.contains('/')).then(|| which(sv)).flatten() {
        Ok(Script::File(found))
    } else {
        Err(ConfigError::invalid(f.msg(
            sk,
            Target::Value,
            &format!(": {}: no such file", candidate.display()),
        ))
        .with_help(format!(
            "script is resolved against the app's cwd ({})",
            cwd.display()
        )))
    }
}

/// The interpreter when none is written: none for a command line, else PM2's pick by the
/// file's extension (a warning when there is none and the file is not executable).
fn default_interpreter(
    f: &Fields,
    sk: &str,
    script: &Script,
    warnings: &mut Vec<String>,
) -> Option<String> {
    let Script::File(p) = script else {
        return None;
    };
    let i = interpreter_for(p).map(str::to_string);
    if i.is_none() && !is_executable(p) {
        warnings.push(f.msg(
            sk,
            Target::Value,
            &format!(
                ": {} is not executable and has no known extension; set interpreter",
                p.display()
            ),
        ));
    }
    i
}

/// The command. For PM2's script-with-spaces case the line is run by `sh -c`, and `args`
/// follow as `$1 $2 ...` (`sh -c LINE sh ARGS...`): they are never re-parsed by the shell.
fn command_of(
    script: &Script,
    interpreter: Option<&str>,
    interpreter_args: &[String],
    args: &[String],
) -> Command {
    match (script, interpreter) {
        (Script::Shell(line), _) => {
            let mut a = vec!["-c".to_string(), line.clone(), "sh".to_string()];
            a.extend(args.iter().cloned());
            Command {
                program: "sh".into(),
                args: a,
            }
        }
        (Script::File(p), Some(i)) => {
            let mut a = interpreter_args.to_vec();
            a.push(p.display().to_string());
            a.extend(args.iter().cloned());
            Command {
                program: i.to_string(),
                args: a,
            }
        }
        (Script::File(p), None) => Command {
            program: p.display().to_string(),
            args: args.to_vec(),
        },
    }
}

/// `name` and where it is; by default the script's file stem (the whole line for a shell
/// command), at the app.
fn name_of(
    path: &[Seg],
    f: &Fields,
    script: &Script,
    sv: &str,
) -> Result<(String, Vec<Seg>), ConfigError> {
    if let Some((k, n)) = f.string("name")? {
        return Ok((n.to_string(), f.path_of(k)));
    }
    let n = match script {
        Script::Shell(line) => line.clone(),
        Script::File(_) => Path::new(sv)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| sv.to_string()),
    };
    Ok((n, path.to_vec()))
}
