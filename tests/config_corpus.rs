//! The ecosystem-file corpus (fixtures/configs/corpus/): every `NN-*` file resolves to its
//! golden plan, and, when node is on PATH, every JavaScript (and `.json`) file agrees with
//! what node itself reads from it, key by key.
//!
//! Regenerate the goldens with `UPDATE_GOLDENS=1 cargo test --test config_corpus`.
//!
//! hotrun runs with a fixed environment (`env_clear` plus PATH, HOME, NODE_PATH), so that
//! the plans do not depend on the machine; paths are normalised to `<dir>`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Map, Value};

const BIN: &str = env!("CARGO_BIN_EXE_hotrun");
const HOME: &str = "/home/corpus";
/// The profiles tried for a file whose text mentions `env_<profile>` (or, for
/// production, a `deploy` section).
const PROFILES: &[&str] = &[
    "production",
    "staging",
    "development",
    "dev",
    "test",
    "local",
];

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/configs/corpus")
        .canonicalize()
        .unwrap()
}

/// The corpus files: `NN-name.ext`, goldens excluded, in order.
fn files(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.len() > 3
                && n.as_bytes()[..2].iter().all(u8::is_ascii_digit)
                && n.as_bytes()[2] == b'-'
                && !n.ends_with(".golden.json")
        })
        .collect();
    out.sort();
    out
}

/// `01-basic.config.js` -> `01-basic`.
fn stem(file: &str) -> &str {
    file.split('.').next().unwrap()
}

fn node_available() -> bool {
    Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The fixed environment of every process the test starts.
fn fixed_env(cmd: &mut Command, dir: &Path) {
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", HOME)
        .env("NODE_PATH", dir.join("vendor_modules"))
        .current_dir(dir);
}

/// Replaces the corpus folder's absolute path with `<dir>` in every string of `v`.
fn normalise(v: &mut Value, dir: &str) {
    match v {
        Value::String(s) if s.contains(dir) => *s = s.replace(dir, "<dir>"),
        Value::Array(items) => items.iter_mut().for_each(|i| normalise(i, dir)),
        Value::Object(map) => map.values_mut().for_each(|i| normalise(i, dir)),
        _ => {}
    }
}

struct Run {
    ok: bool,
    /// The plan's apps (or the error line).
    plan: Value,
    /// hotrun's own stderr lines (notes, warnings, errors), without `hotrun: `.
    messages: Vec<String>,
}

fn hotrun(dir: &Path, file: &str, profile: Option<&str>) -> Run {
    let mut cmd = Command::new(BIN);
    fixed_env(&mut cmd, dir);
    cmd.args(["config", "--json", "--show-secrets", "--config", file]);
    if let Some(p) = profile {
        cmd.args(["--env", p]);
    }
    let out = cmd.output().expect("run hotrun");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let messages: Vec<String> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("hotrun: "))
        .map(str::to_string)
        .collect();
    let ok = out.status.success();
    let plan = if ok {
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{file}: stdout is not JSON: {e}\n{stderr}"));
        v["apps"].clone()
    } else {
        Value::Null
    };
    Run { ok, plan, messages }
}

/// The golden document of one file: the plan without `--env`, then with each profile the
/// file mentions, each with hotrun's messages.
fn golden_of(dir: &Path, file: &str) -> (Value, Vec<String>) {
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    let mut doc = Map::new();
    let mut failures = Vec::new();
    let mut profiles: Vec<Option<&str>> = vec![None];
    profiles.extend(
        PROFILES
            .iter()
            .filter(|p| {
                text.contains(&format!("env_{p}"))
                    || (**p == "production" && text.contains("deploy"))
            })
            .map(|p| Some(*p)),
    );
    for profile in profiles {
        let run = hotrun(dir, file, profile);
        let key = match profile {
            None => "default".to_string(),
            Some(p) => format!("--env {p}"),
        };
        if !run.ok {
            failures.push(format!("{file} ({key}): {}", run.messages.join(" / ")));
        }
        doc.insert(key, json!({ "apps": run.plan, "messages": run.messages }));
    }
    let mut doc = Value::Object(doc);
    normalise(&mut doc, &dir.display().to_string());
    (doc, failures)
}

#[test]
fn corpus_matches_goldens() {
    let dir = corpus();
    let update = std::env::var_os("UPDATE_GOLDENS").is_some_and(|v| !v.is_empty());
    let node = node_available();
    let list = files(&dir);
    assert!(list.len() >= 40, "the corpus has {} files", list.len());
    let mut failures = Vec::new();
    for file in &list {
        let golden_path = dir.join(format!("{}.golden.json", stem(file)));
        let (doc, errors) = golden_of(&dir, file);
        if update {
            if !node {
                panic!("UPDATE_GOLDENS needs node on PATH (some files are evaluated with it)");
            }
            let text = serde_json::to_string_pretty(&doc).unwrap() + "\n";
            std::fs::write(&golden_path, text).unwrap();
            failures.extend(errors);
            continue;
        }
        let want: Value = match std::fs::read_to_string(&golden_path) {
            Ok(t) => serde_json::from_str(&t).unwrap(),
            Err(_) => {
                failures.push(format!(
                    "{file}: no golden file {}; run with UPDATE_GOLDENS=1",
                    golden_path.display()
                ));
                continue;
            }
        };
        let golden_needs_node = want["default"]["messages"].as_array().is_some_and(|m| {
            m.iter()
                .any(|l| l.as_str().unwrap_or("").contains("with node"))
        });
        if !node && golden_needs_node {
            assert!(
                std::env::var_os("CI").is_none(),
                "{file} needs node, not on PATH under CI"
            );
            eprintln!("{file}: needs node, which is not on PATH: not compared");
            continue;
        }
        if doc != want {
            failures.push(format!(
                "{file}: plan differs from {}\n--- got\n{}\n--- want\n{}",
                golden_path.display(),
                serde_json::to_string_pretty(&doc).unwrap(),
                serde_json::to_string_pretty(&want).unwrap()
            ));
        }
        failures.extend(errors);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Loads a file with node as PM2 does (require, import() for ES modules, `(text)` for
/// .json) and prints, after a marker, the keys both tools have, normalised the way PM2
/// hands them to the process.
const NODE_VIEW: &str = r#"
const path = require('path');
const fs = require('fs');
const url = require('url');
const file = process.argv[1];
const dir = path.dirname(file);
async function load() {
  if (/\.json5?$/.test(file)) {
    return require('vm').runInThisContext('(' + fs.readFileSync(file, 'utf8') + '\n)');
  }
  if (/\.mjs$/.test(file)) return import(url.pathToFileURL(file).href);
  try { return require(file); } catch (e) {
    if (e && (e.code === 'ERR_REQUIRE_ESM' || e.name === 'SyntaxError')) {
      return import(url.pathToFileURL(file).href);
    }
    throw e;
  }
}
load().then((v) => {
  if (v && (v[Symbol.toStringTag] === 'Module' || v.__esModule) && 'default' in v) v = v.default;
  let apps = (v && (v.apps || v.pm2)) || v;
  if (!Array.isArray(apps)) apps = [apps];
  const out = apps.map((a) => {
    const cwd = a.cwd ? path.resolve(dir, a.cwd) : dir;
    const env = {};
    for (const [k, x] of Object.entries(a.env || {})) {
      if (x === undefined || x === null) continue;
      env[k] = typeof x === 'object' ? JSON.stringify(x) : String(x);
    }
    const o = { name: a.name, cwd, env };
    if (typeof a.script === 'string') o.script = path.resolve(cwd, a.script);
    if (typeof a.instances === 'number' && a.instances >= 1) o.instances = a.instances;
    if (typeof a.instances === 'string' && /^[1-9]\d*$/.test(a.instances)) o.instances = parseInt(a.instances, 10);
    if (Array.isArray(a.args)) o.args = a.args.map(String);
    if (a.port !== undefined) o.port = a.port;
    return o;
  });
  process.stdout.write('\n@@NODE_VIEW@@' + JSON.stringify(out) + '\n');
}, (e) => { console.error(e); process.exit(1); });
"#;

#[test]
fn javascript_files_agree_with_node() {
    if !node_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "node is not on PATH under CI"
        );
        eprintln!("node not on PATH: not run");
        return;
    }
    let dir = corpus();
    let mut failures = Vec::new();
    let mut compared = 0;
    for file in files(&dir) {
        let ext = file.rsplit('.').next().unwrap();
        if !matches!(ext, "js" | "cjs" | "mjs" | "json" | "json5") {
            continue;
        }
        let mut cmd = Command::new("node");
        fixed_env(&mut cmd, &dir);
        let out = cmd
            .args(["-e", NODE_VIEW, "--"])
            .arg(dir.join(&file))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let Some(line) = stdout
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("@@NODE_VIEW@@"))
        else {
            if ext.starts_with("json") {
                continue; // not a JavaScript expression (JSON5 only): nothing to compare
            }
            failures.push(format!(
                "{file}: node could not load it:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
            continue;
        };
        let node_apps: Vec<Value> = serde_json::from_str(line).unwrap();
        let run = hotrun(&dir, &file, None);
        if !run.ok {
            failures.push(format!("{file}: hotrun failed: {:?}", run.messages));
            continue;
        }
        let ours = run.plan.as_array().unwrap();
        if ours.len() != node_apps.len() {
            failures.push(format!(
                "{file}: {} apps, node has {}",
                ours.len(),
                node_apps.len()
            ));
            continue;
        }
        for (i, (n, h)) in node_apps.iter().zip(ours).enumerate() {
            let mut differ = |what: &str, node: &Value, hotrun: &Value| {
                if node != hotrun {
                    failures.push(format!(
                        "{file} app {i} {what}: node {node}, hotrun {hotrun}"
                    ));
                }
            };
            if n.get("name").is_some_and(|v| !v.is_null()) {
                differ("name", &n["name"], &h["name"]);
            }
            differ("cwd", &n["cwd"], &h["cwd"]);
            if let Some(s) = n.get("script") {
                if Path::new(s.as_str().unwrap()).is_file() {
                    differ("script", s, &h["script"]);
                }
            }
            if let Some(x) = n.get("instances") {
                differ("instances", x, &h["instances"]);
            }
            if let Some(a) = n.get("args") {
                differ("args", a, &h["args"]);
            }
            let has_port = n.get("port").is_some();
            for (k, v) in n["env"].as_object().unwrap() {
                if has_port && k == "PORT" {
                    continue; // `port` sets PORT, in PM2 as in hotrun
                }
                // An object's JSON text: hotrun's keys are sorted, node's in insertion
                // order; compare the data.
                let parsed = |x: &Value| {
                    x.as_str()
                        .filter(|s| s.starts_with('{'))
                        .and_then(|s| serde_json::from_str::<Value>(s).ok())
                };
                match (parsed(v), parsed(&h["env"][k])) {
                    (Some(a), Some(b)) => differ(&format!("env.{k}"), &a, &b),
                    _ => differ(&format!("env.{k}"), v, &h["env"][k]),
                }
            }
            compared += 1;
        }
    }
    assert!(compared >= 30, "only {compared} apps compared");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
