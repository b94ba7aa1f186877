//! `hotrun config` end to end: the real binary reads the fixtures in fixtures/configs/
//! (and files written to temp folders) and prints the plan, or an exact error.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::cli::{hotrun, hotrun_env, node_available};
use common::HOTRUN;
use serde_json::Value;

fn fixtures(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/configs")
        .join(sub)
}

fn cpus() -> u64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap()
}

#[test]
fn seed_variants_resolve_to_the_same_plan() {
    let dir = fixtures("seed");
    let plan_of = |file: &str| {
        let run = hotrun(
            &dir,
            &["config", "--json", "--env", "production", "--config", file],
        );
        assert_eq!(run.code, 0, "{file}:\n{}", run.stderr);
        let plan = run.json();
        assert_eq!(Path::new(plan["config"].as_str().unwrap()), dir.join(file));
        plan["apps"].clone()
    };
    let seed = plan_of("ecosystem.config.js");
    let mut variants = vec![
        "ecosystem.variant.json",
        "ecosystem.variant.json5",
        "ecosystem.variant.config.cjs",
        "ecosystem.variant.mjs",
    ];
    if node_available() {
        variants.push("ecosystem.computed.config.js");
    }
    for v in variants {
        assert_eq!(plan_of(v), seed, "{v} differs from the seed");
    }
}

#[test]
fn seed_production_plan() {
    let dir = fixtures("seed");
    let run = hotrun(
        &dir,
        &[
            "config",
            "--config",
            "ecosystem.config.js",
            "--env",
            "production",
            "--json",
        ],
    );
    let plan = run.json();
    assert_eq!(plan["profile"], "production");
    let app = &run.apps()[0];
    assert_eq!(app["name"], "web-nextjs-server");
    assert_eq!(app["instances"], 3);
    assert_eq!(app["exec_mode"], "cluster");
    assert_eq!(app["env"]["NODE_ENV"], "production");
    assert_eq!(app["env"]["HTTP_PORT"], "8888");
    assert_eq!(app["env"]["Redis_HOST"], "localhost");
    assert_eq!(app["env"]["Redis_PORT"], "6379");
    assert_eq!(app["kill_timeout"], 5000);
    assert_eq!(app["listen_timeout"], 50000);
    assert_eq!(app["max_memory_restart"], 314_572_800);
    assert_eq!(app["wait_ready"], true);
    assert_eq!(app["autorestart"], true);
    assert_eq!(app["interpreter"], "node");
    assert_eq!(
        Path::new(app["script"].as_str().unwrap()),
        dir.join("server.js")
    );
    assert_eq!(app["watch"], serde_json::json!([dir]));
    // max_memory_restart and watch are enforced: no warning for them.
    assert!(!run.stderr.contains("not enforced"), "{}", run.stderr);
    assert_eq!(app["watch_delay"], 100, "hotrun's default debounce");
}

#[test]
fn discovery_names_the_file_and_human_output_summarises() {
    let run = hotrun(&fixtures("seed"), &["config"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.first(), "using ecosystem.config.js");
    assert!(
        run.stdout.contains("web-nextjs-server (cluster x3)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("NODE_ENV=development"),
        "{}",
        run.stdout
    );
}

#[test]
fn profile_is_merged_over_env() {
    let dir = fixtures("broken");
    let env_of = |args: &[&str]| {
        let mut a = vec!["config", "--json", "--config", "profiles.json5"];
        a.extend_from_slice(args);
        hotrun(&dir, &a).apps()[0]["env"].clone()
    };
    assert_eq!(env_of(&[]), serde_json::json!({"A": "env", "B": "env"}));
    assert_eq!(
        env_of(&["--env", "production"]),
        serde_json::json!({"A": "env", "B": "prod"})
    );
    assert_eq!(
        env_of(&["--env", "staging"]),
        serde_json::json!({"A": "env", "B": "staging"})
    );
    let seed = hotrun(
        &fixtures("seed"),
        &["config", "--json", "--config", "ecosystem.config.js"],
    );
    let env = &seed.apps()[0]["env"];
    assert_eq!(env["NODE_ENV"], "development");
    assert!(env.get("HTTP_PORT").is_none());
}

#[test]
fn instances_follow_available_parallelism() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("server.js"), "").unwrap();
    std::fs::write(
        tmp.path().join("ecosystem.config.json5"),
        "{ apps: [\n  { name: 'zero', script: 'server.js', instances: 0 },\n  { name: 'max', script: 'server.js', instances: 'max' },\n  { name: 'minus1', script: 'server.js', instances: -1 },\n  { name: 'minus2', script: 'server.js', instances: '-2' },\n  { name: 'four', script: 'server.js', instances: '4' },\n  { name: 'unset', script: 'server.js' },\n] }\n",
    )
    .unwrap();
    let apps = hotrun(tmp.path(), &["config", "--json"]).apps();
    let n = cpus();
    let got: Vec<(String, u64, String)> = apps
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_string(),
                a["instances"].as_u64().unwrap(),
                a["exec_mode"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = |name: &str, i: u64, mode: &str| (name.to_string(), i, mode.to_string());
    assert_eq!(
        got,
        vec![
            want("zero", n, "cluster"),
            want("max", n, "cluster"),
            want("minus1", n.saturating_sub(1).max(1), "cluster"),
            want("minus2", n.saturating_sub(2).max(1), "fork"),
            want("four", 4, "cluster"),
            want("unset", 1, "fork"),
        ]
    );
}

/// (file, extra args, exit code, first stderr line after `hotrun: `)
const BROKEN: &[(&str, &[&str], i32, &str)] = &[
    ("env_nul.json5", &[], 4, "env_nul.json5:4:44: env.SECRET: a value cannot contain a NUL character (a process receives NUL-terminated text)"),
    ("env_key_empty.json5", &[], 4, "env_key_empty.json5:4:12: env.\"\": an empty variable name cannot be passed to a process"),
    (
        "env_key_equals.json5",
        &["--env", "production"],
        4,
        "env_key_equals.json5:5:7: env_production.A=B: a variable name cannot contain '=' (the environment is NAME=value)",
    ),
    ("syntax.json5", &[], 4, "syntax.json5:4:5: syntax error: expected comma"),
    ("syntax.json", &[], 4, "syntax.json:5:2: syntax error: trailing characters"),
    ("instances.json5", &[], 4, "instances.json5:4:16: instances must be a number, 'max' or -1 (got \"three\")"),
    ("instances_too_many.json5", &[], 4, "instances_too_many.json5:4:16: instances must be a number up to 1024 (each instance is a process), 'max' or -1 (got 100000)"),
    ("kill_timeout.json5", &[], 4, "kill_timeout.json5:1:47: kill_timeout must be a number of milliseconds (got \"soon\")"),
    ("autorestart.json5", &[], 4, "autorestart.json5:4:18: autorestart must be true or false (got \"yes\")"),
    // PM2 7.0.4 refuses it as well ("Expect stop_exit_codes to be a typeof Array / Number").
    ("log_max_size.json5", &[], 4, "log_max_size.json5:5:19: log_max_size must be a whole number of bytes, or a whole number with K, M or G (e.g. 300M) (got \"big\")"),
    ("cron_restart.json5", &[], 4, "cron_restart.json5:4:19: cron_restart must be a cron expression (5 fields, or 6 with seconds first) (got \"0 3 * *\"): Invalid pattern: Pattern must have between 5 and 7 fields."),
    ("stop_exit_codes_string.json5", &[], 4, "stop_exit_codes_string.json5:4:22: stop_exit_codes must be an exit code or an array of exit codes (got \"[0]\"): write stop_exit_codes: [0], without quotes (PM2 refuses the string too)"),
    ("env_number.json5", &[], 4, "env_number.json5:4:10: env must be an object of variable names and values (got 5)"),
    ("args_number.json5", &[], 4, "args_number.json5:4:11: args must be a string or an array of strings (got 42)"),
    (
        "memory.json5",
        &[],
        4,
        "memory.json5:4:25: max_memory_restart must be a whole number of bytes, or a whole number with K, M or G (e.g. 300M) (got \"1.5G\")",
    ),
    (
        "min_uptime.json5",
        &[],
        4,
        "min_uptime.json5:4:17: min_uptime must be milliseconds or a whole number with s, m or h (e.g. 30s, 5m, 1h) (got \"10 minutes\")",
    ),
    (
        "exec_mode.json5",
        &[],
        4,
        "exec_mode.json5:4:16: exec_mode must be 'fork' or 'cluster' (or 'fork_mode', 'cluster_mode') (got \"turbo\")",
    ),
    (
        "kill_signal.json5",
        &[],
        4,
        "kill_signal.json5:4:18: kill_signal must be a signal name such as SIGINT, SIGTERM or SIGUSR2 (got \"SIGFOO\")",
    ),
    (
        "no_script.json5",
        &[],
        4,
        "no_script.json5:4:5: apps[1]: script is required (the file to run, e.g. script: 'server.js')",
    ),
    ("empty_apps.json5", &[], 4, "empty_apps.json5:2:9: apps is empty: there is no app to run"),
    ("duplicate.json5", &[], 4, "duplicate.json5:4:13: name: duplicate app name 'web' (also at line 3)"),
    (
        "profiles.json5",
        &["--env", "qa"],
        4,
        "profiles.json5: --env qa: no app defines env_qa (profiles in the file: env_production, env_staging)",
    ),
    (
        "env_number.json5",
        &["--env", "qa"],
        4,
        "env_number.json5:4:10: env must be an object of variable names and values (got 5)",
    ),
    ("profiles.json5", &["--only", "web"], 4, "profiles.json5: --only web: no app of that name (apps: server)"),
    (".", &[], 3, ".: is a folder, not an ecosystem file"),
    ("nope.json5", &[], 3, "nope.json5: no such file"),
];

#[test]
fn broken_configs_name_file_line_column() {
    let dir = fixtures("broken");
    let mut failures = Vec::new();
    for (file, extra, code, first) in BROKEN {
        let mut args = vec!["config", "--json", "--config", file];
        args.extend_from_slice(extra);
        let run = hotrun(&dir, &args);
        if run.code != *code || run.first() != *first {
            failures.push(format!(
                "{file} {extra:?}: want exit {code} and\n  {first}\ngot exit {} and\n  {}",
                run.code,
                run.first()
            ));
        }
        assert!(run.stdout.is_empty(), "{file}: nothing on stdout on error");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn missing_script_file_names_the_resolved_path() {
    let dir = fixtures("broken");
    let run = hotrun(&dir, &["config", "--config", "missing_script_file.json5"]);
    assert_eq!(run.code, 4);
    let path = dir.join("nope/server.js");
    assert_eq!(
        run.first(),
        format!(
            "missing_script_file.json5:4:13: script: {}: no such file",
            path.display()
        )
    );
    assert!(run
        .stderr
        .contains("help: script is resolved against the app's cwd"));
}

#[test]
fn profile_missing_when_the_app_has_none() {
    let run = hotrun(
        &fixtures("broken"),
        &[
            "config",
            "--config",
            "kill_signal.json5",
            "--env",
            "production",
        ],
    );
    // Type errors come first: this file is invalid anyway.
    assert_eq!(run.code, 4);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("server.js"), "").unwrap();
    std::fs::write(
        tmp.path().join("ecosystem.json"),
        r#"{"apps": [{"script": "server.js"}]}"#,
    )
    .unwrap();
    let run = hotrun(tmp.path(), &["config", "--env", "production"]);
    assert_eq!(run.code, 4);
    assert_eq!(
        run.first(),
        "ecosystem.json: --env production: no app defines env_production (the file defines no env_* profile)"
    );
}

#[test]
fn unknown_keys_are_warnings_with_suggestions() {
    let run = hotrun(
        &fixtures("broken"),
        &["config", "--json", "--config", "unknown_key.json5"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "hotrun: warning: unknown_key.json5:4:5: instnaces: unknown key; did you mean instances?",
            "hotrun: warning: unknown_key.json5:5:5: namespace: known PM2 key, not supported by hotrun; ignored",
            "hotrun: warning: unknown_key.json5:6:5: banana: unknown key; ignored",
        ]
    );
    assert_eq!(run.apps()[0]["instances"], 1);
}

#[test]
fn bare_byte_count_gets_a_warning() {
    let run = hotrun(
        &fixtures("broken"),
        &["config", "--json", "--config", "memory_bytes.json5"],
    );
    assert_eq!(run.apps()[0]["max_memory_restart"], 300);
    assert!(run.stderr.contains(
        "hotrun: warning: memory_bytes.json5:4:25: max_memory_restart: 300 means 300 bytes (a number without unit is bytes); write '300M' for megabytes"
    ), "{}", run.stderr);
}

#[test]
fn no_config_in_an_empty_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let run = hotrun(tmp.path(), &["config"]);
    assert_eq!(run.code, 3);
    let cwd = tmp.path().canonicalize().unwrap();
    assert_eq!(
        run.first(),
        format!(
            "no ecosystem file in {}: looked for ecosystem.config.js, ecosystem.config.cjs, ecosystem.config.json, ecosystem.json, ecosystem.config.json5, ecosystem.config.yml, ecosystem.config.yaml",
            cwd.display()
        )
    );
    assert!(run.stderr.contains("--config"));
}

#[test]
fn non_utf8_file_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("bad.json5"),
        b"{\n  apps: [{ script: 's\xff.js' }],\n}\n",
    )
    .unwrap();
    let run = hotrun(tmp.path(), &["config", "--config", "bad.json5"]);
    assert_eq!(run.code, 4);
    assert_eq!(run.first(), "bad.json5:2:22: not valid UTF-8 (byte 0xff)");
}

#[test]
fn javascript_is_evaluated_with_node() {
    if !node_available() {
        return common::cannot_run("node is not on PATH");
    }
    let out = Command::new("node")
        .args(["-e", "console.log(require('os').cpus().length)"])
        .output()
        .unwrap();
    let node_cpus: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let run = hotrun(
        &fixtures("js"),
        &["config", "--json", "--config", "cpus.config.js"],
    );
    assert!(
        run.stderr
            .lines()
            .any(|l| l == "hotrun: cpus.config.js uses JavaScript; evaluated with node"),
        "{}",
        run.stderr
    );
    assert_eq!(run.apps()[0]["instances"], node_cpus);
}

#[test]
fn javascript_without_node_points_at_the_first_non_literal() {
    let run = hotrun_env(
        &fixtures("js"),
        &["config", "--json", "--config", "cpus.config.js"],
        &[("HOTRUN_NODE", "/nonexistent/node")],
    );
    assert_eq!(run.code, 4);
    assert_eq!(
        run.first(),
        "cpus.config.js:6:16: JavaScript that is not a plain literal (expected value) needs node on PATH to evaluate; node was not found"
    );
    // A literal JS file needs no node at all.
    let run = hotrun_env(
        &fixtures("seed"),
        &["config", "--json", "--config", "ecosystem.config.js"],
        &[("HOTRUN_NODE", "/nonexistent/node")],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn console_output_of_a_config_does_not_corrupt_the_plan() {
    if !node_available() {
        return common::cannot_run("node is not on PATH");
    }
    let run = hotrun(
        &fixtures("seed"),
        &[
            "config",
            "--json",
            "--config",
            "ecosystem.computed.config.js",
        ],
    );
    assert_eq!(run.apps()[0]["instances"], 3);
    assert!(run.stderr.contains("building the config"), "{}", run.stderr);
    assert!(!run.stdout.contains("building the config"));
}

#[test]
fn a_throwing_config_gives_message_and_line() {
    if !node_available() {
        return common::cannot_run("node is not on PATH");
    }
    let dir = fixtures("js");
    let run = hotrun(&dir, &["config", "--config", "throws.config.js"]);
    assert_eq!(run.code, 5);
    assert_eq!(
        run.first(),
        "throws.config.js:4: Error: no apps configured for this host"
    );

    let run = hotrun(&dir, &["config", "--config", "missing_module.config.js"]);
    assert_eq!(run.code, 5);
    assert_eq!(
        run.first(),
        "missing_module.config.js:1: Cannot find module 'dotenv-hotrun-missing'; run `npm install dotenv-hotrun-missing`"
    );
}

#[test]
fn a_config_that_never_finishes_is_stopped() {
    if !node_available() {
        return common::cannot_run("node is not on PATH");
    }
    let started = std::time::Instant::now();
    let run = hotrun(&fixtures("js"), &["config", "--config", "hangs.config.js"]);
    assert_eq!(run.code, 5);
    assert_eq!(
        run.first(),
        "hangs.config.js: evaluating with node did not finish within 5 s; node was stopped"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}

#[test]
fn shell_commands_and_path_programs() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("ecosystem.config.js"),
        "module.exports = {\n  apps: [\n    { name: 'greet', script: 'echo hello && sleep 1', args: ['a b', 'c'] },\n    { script: 'sh', args: '-c \"exit 0\"' },\n  ],\n};\n",
    )
    .unwrap();
    let run = hotrun(tmp.path(), &["config", "--json"]);
    let apps = run.apps();
    assert_eq!(apps[0]["script"], "echo hello && sleep 1");
    assert_eq!(apps[0]["interpreter"], Value::Null);
    assert_eq!(apps[0]["args"], serde_json::json!(["a b", "c"]));
    assert_eq!(apps[1]["name"], "sh");
    assert_eq!(apps[1]["args"], serde_json::json!(["-c", "exit 0"]));
    assert!(apps[1]["script"].as_str().unwrap().ends_with("/sh"));
}

#[test]
fn startup_systemd_prints_a_unit_for_the_seeds_file_that_systemd_accepts() {
    let seed = fixtures("seed");
    let run = hotrun(&seed, &["startup", "systemd", "--env", "production"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let config = seed.join("ecosystem.config.js");
    let text = run.stdout.clone();
    for want in [
        format!(
            "ExecStart={} --config {} --env production",
            HOTRUN,
            config.display()
        ),
        "ExecReload=/bin/kill -HUP $MAINPID".to_string(),
        "KillMode=mixed".to_string(),
        // The seed's kill_timeout (5000 ms) + drain_delay (100 ms), rounded up, + 10 s.
        "TimeoutStopSec=16".to_string(),
        "Restart=on-failure".to_string(),
        format!("WorkingDirectory={}", seed.display()),
        "WantedBy=multi-user.target".to_string(),
    ] {
        assert!(text.lines().any(|l| l == want), "{want}\n{text}");
    }
    // Where systemd's checker exists, it accepts the unit.
    if let Ok(out) = Command::new("systemd-analyze").arg("--version").output() {
        if out.status.success() {
            let dir = tempfile::tempdir().unwrap();
            let unit = dir.path().join("hotrun-seed.service");
            std::fs::write(&unit, &text).unwrap();
            let verify = Command::new("systemd-analyze")
                .arg("verify")
                .arg(&unit)
                .output()
                .unwrap();
            assert!(
                verify.status.success(),
                "{}",
                String::from_utf8_lossy(&verify.stderr)
            );
        }
    }
}
