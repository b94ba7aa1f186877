//! Evaluating a JavaScript ecosystem file with node, for files that compute their config
//! (`require`, `process.env`, `os.cpus()`, functions, ...).
//!
//! node runs in the file's folder with hotrun's environment. A small inline script
//! `require`s the file (or `import()`s it for ES modules, taking `.default`) and writes
//! `{"ok": <config>}` or `{"error": {...}}` to a private temp file named in
//! `HOTRUN_CONFIG_OUT`: a channel of its own, so `console.log` in the config cannot corrupt
//! the result. The config's stdout and stderr go to hotrun's stderr. node is killed after
//! [`TIMEOUT`]. `HOTRUN_NODE` overrides the node program (tests use it to simulate "no node").

use std::fs;
use std::io::ErrorKind;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::error::ConfigError;

/// How long the file may take to evaluate.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The env var naming the node program (default `node` from PATH).
pub const NODE_ENV_VAR: &str = "HOTRUN_NODE";

const SCRIPT: &str = r#"
const fs = require('fs');
const out = process.env.HOTRUN_CONFIG_OUT;
delete process.env.HOTRUN_CONFIG_OUT;
const file = process.argv[1];
function fail(e) {
  const o = (e !== null && typeof e === 'object') ? e : {};
  fs.writeFileSync(out, JSON.stringify({ error: {
    name: String(o.name || 'Error'),
    message: String(o.message !== undefined ? o.message : e),
    code: o.code ? String(o.code) : null,
    stack: String(o.stack || ''),
  } }));
  process.exit(0);
}
function done(v) {
  if (v !== null && typeof v === 'object' && 'default' in v &&
      (v.__esModule || v[Symbol.toStringTag] === 'Module')) v = v.default;
  let text;
  try { text = JSON.stringify(v === undefined ? null : v); } catch (e) { fail(e); }
  fs.writeFileSync(out, '{"ok":' + text + '}');
  process.exit(0);
}
function viaImport() {
  import(require('url').pathToFileURL(file).href).then(done, fail);
}
// ES module syntax that `require` cannot load (older node, top-level await, "type":
// "module"): `import()` reads it.
function needsImport(e) {
  if (!e) return false;
  if (e.code === 'ERR_REQUIRE_ESM' || e.code === 'ERR_REQUIRE_ASYNC_MODULE') return true;
  return e.name === 'SyntaxError' &&
    /Cannot use import statement|Unexpected token 'export'|import\.meta|await is only valid/.test(String(e.message));
}
process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);
const mode = process.argv[2];
if (mode === 'esm') {
  viaImport();
} else if (mode === 'expr') {
  // PM2 reads a .json file as `(text)` evaluated as JavaScript.
  let v, ok = false;
  try {
    const text = fs.readFileSync(file, 'utf8').replace(/^\uFEFF/, '');
    v = require('vm').runInThisContext('(' + text + '\n)', { filename: file });
    ok = true;
  } catch (e) { fail(e); }
  if (ok) done(v);
} else {
  let v, ok = false;
  try { v = require(file); ok = true; } catch (e) {
    if (needsImport(e)) viaImport(); else fail(e);
  }
  if (ok) done(v);
}
"#;

/// How node loads the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `require`, falling back to `import()` for ES module syntax.
    Require,
    /// `import()` (`.mjs`, `export default`).
    Import,
    /// `vm.runInThisContext('(' + text + ')')`: how PM2 reads `.json` files.
    Expression,
}

/// Evaluates a `.json` file as a JavaScript expression, as PM2 does. `None` when node is
/// not there or the evaluation fails in any way (the caller then reports its own error).
pub fn evaluate_expression(path: &Path) -> Option<Value> {
    run(path, "", Mode::Expression).ok().flatten()
}

/// Evaluates `path` with node. `Ok(None)` when node cannot be started (absent).
pub fn evaluate(path: &Path, display: &str, esm: bool) -> Result<Option<Value>, ConfigError> {
    run(
        path,
        display,
        if esm { Mode::Import } else { Mode::Require },
    )
}

/// Runs node on `path` in `mode` and reads back what the file exports.
fn run(path: &Path, display: &str, mode: Mode) -> Result<Option<Value>, ConfigError> {
    let node = std::env::var(NODE_ENV_VAR)
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".to_string());
    let dir = path.parent().unwrap_or(Path::new("/"));
    let out = TempFile::create().map_err(|e| {
        ConfigError::eval(format!(
            "{display}: cannot create a temporary file for node's result: {e}"
        ))
    })?;

    let mut cmd = Command::new(&node);
    cmd.arg("-e")
        .arg(SCRIPT)
        .arg("--")
        .arg(path)
        .arg(match mode {
            Mode::Require => "cjs",
            Mode::Import => "esm",
            Mode::Expression => "expr",
        })
        .current_dir(dir)
        .env("HOTRUN_CONFIG_OUT", &out.0)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    // The config's own stdout goes to hotrun's stderr.
    match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => cmd.stdout(Stdio::from(fd)),
        Err(_) => cmd.stdout(Stdio::null()),
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::PermissionDenied) => {
            return Ok(None)
        }
        Err(e) => {
            return Err(ConfigError::eval(format!(
                "{display}: cannot run {node}: {e}"
            )))
        }
    };

    let status = wait_within(&mut child, display)?;
    result_of(path, display, &out.0, status)
}

/// Waits for node to end; stops it after [`TIMEOUT`], or when waiting fails.
fn wait_within(child: &mut Child, display: &str) -> Result<ExitStatus, ConfigError> {
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if started.elapsed() >= TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ConfigError::eval(format!(
                    "{display}: evaluating with node did not finish within {} s; node was stopped",
                    TIMEOUT.as_secs()
                ))
                .with_help(
                    "the file must compute its config synchronously (or in a promise that settles)",
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ConfigError::eval(format!(
                    "{display}: waiting for node failed: {e}"
                )));
            }
        }
    }
}

/// What node wrote to `out` once it ended with `status`: the file's value, or its error.
fn result_of(
    path: &Path,
    display: &str,
    out: &Path,
    status: ExitStatus,
) -> Result<Option<Value>, ConfigError> {
    let result = fs::read_to_string(out).unwrap_or_default();
    if result.trim().is_empty() {
        let how = match status.code() {
            Some(c) => format!("exit code {c}"),
            None => "a signal".to_string(),
        };
        return Err(ConfigError::eval(format!(
            "{display}: node ended ({how}) before the file's config was read"
        ))
        .with_help("does the file call process.exit()? It must only build and export the config"));
    }
    let parsed: Value = serde_json::from_str(&result)
        .map_err(|e| ConfigError::eval(format!("{display}: unreadable result from node: {e}")))?;
    if let Some(v) = parsed.get("ok") {
        return Ok(Some(v.clone()));
    }
    let err = parsed.get("error").cloned().unwrap_or(Value::Null);
    Err(thrown(path, display, &err))
}

/// The error for a file that threw: node's message and the file:line from its stack.
fn thrown(path: &Path, display: &str, err: &Value) -> ConfigError {
    let field = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (name, message, code, stack) = (
        field("name"),
        field("message"),
        field("code"),
        field("stack"),
    );
    let first = message.lines().next().unwrap_or("").to_string();
    let at = match line_in_stack(&stack, path) {
        Some(line) => format!("{display}:{line}"),
        None => display.to_string(),
    };
    if code == "MODULE_NOT_FOUND" || code == "ERR_MODULE_NOT_FOUND" {
        if let Some(module) = quoted(&first) {
            if !module.starts_with('.') && !module.starts_with('/') {
                let pkg = package_name(&module);
                let dir = path.parent().unwrap_or(Path::new("."));
                return ConfigError::eval(format!("{at}: {first}; run `npm install {pkg}`"))
                    .with_help(format!(
                        "the package {pkg} is not installed: run npm install {pkg} in {}",
                        dir.display()
                    ));
            }
        }
    }
    if first.contains("Cannot use import statement outside a module")
        || first.contains("Unexpected token 'export'")
    {
        return ConfigError::eval(format!("{at}: {name}: {first}")).with_help(
            "the file uses ES module syntax (import/export): name it .mjs, or add \"type\": \"module\" to its package.json",
        );
    }
    let label = if name.is_empty() {
        "Error".to_string()
    } else {
        name
    };
    ConfigError::eval(format!("{at}: {label}: {first}"))
        .with_help("the file uses JavaScript and was evaluated with node, which threw this error")
}

/// The first `<path>:<line>` in a stack trace (CommonJS paths or file URLs).
fn line_in_stack(stack: &str, path: &Path) -> Option<u64> {
    let p = path.to_string_lossy();
    let mut rest = stack;
    while let Some(i) = rest.find(p.as_ref()) {
        let after = &rest[i + p.len()..];
        if let Some(digits) = after.strip_prefix(':') {
            let n: String = digits.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(line) = n.parse() {
                return Some(line);
            }
        }
        rest = after;
    }
    None
}

/// `x` from `Cannot find module 'x'` (or `"x"`).
fn quoted(s: &str) -> Option<String> {
    for q in ['\'', '"'] {
        if let Some(start) = s.find(q) {
            if let Some(len) = s[start + 1..].find(q) {
                return Some(s[start + 1..start + 1 + len].to_string());
            }
        }
    }
    None
}

/// The npm package of a module specifier: `lodash/fp` -> `lodash`, `@a/b/c` -> `@a/b`.
fn package_name(spec: &str) -> String {
    let parts: Vec<&str> = spec.split('/').collect();
    if spec.starts_with('@') && parts.len() >= 2 {
        format!("{}/{}", parts[0], parts[1])
    } else {
        parts[0].to_string()
    }
}

/// A private temp file for node's result, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn create() -> std::io::Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "hotrun-config-{}-{}-{nanos}.json",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(TempFile(path))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_lines_and_packages() {
        let p = Path::new("/tmp/x/eco.config.js");
        let stack = "Error: Cannot find module 'dotenv'\nRequire stack:\n- /tmp/x/eco.config.js\n    at Object.<anonymous> (/tmp/x/eco.config.js:3:11)";
        assert_eq!(line_in_stack(stack, p), Some(3));
        assert_eq!(
            line_in_stack("/tmp/x/eco.config.js:7\n}\n^\nSyntaxError: x", p),
            Some(7)
        );
        assert_eq!(
            line_in_stack("at file:///tmp/x/eco.config.js:9:1", p),
            Some(9)
        );
        assert_eq!(line_in_stack("nothing", p), None);
        assert_eq!(
            quoted("Cannot find module 'dotenv'").as_deref(),
            Some("dotenv")
        );
        assert_eq!(package_name("lodash/fp"), "lodash");
        assert_eq!(package_name("@scope/pkg/sub"), "@scope/pkg");
    }
}
