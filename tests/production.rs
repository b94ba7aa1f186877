//! Production use: `hotrun status --ready` for readiness probes, `--log-format json` for
//! log collectors, hotrun's exit code following the app's.

mod common;

use std::process::Command;

use common::http::free_port;
use common::*;

fn http_config(extra: &str) -> tempfile::TempDir {
    config_dir(&format!(
        "module.exports = {{ apps: [{{ name: 'web', script: '{}', wait_ready: true,
           env: {{ HTTP_PORT: {} }}, {extra} }}] }};\n",
        app("http.js"),
        free_port()
    ))
}

fn ready(dir: &std::path::Path, verbose: bool) -> std::process::Output {
    let mut args = vec!["status", "--ready"];
    if verbose {
        args.push("--verbose");
    }
    hotrun_cmd(dir, &args)
}

#[test]
fn status_ready_is_0_only_when_every_instance_is_online() {
    let dir = http_config("instances: 2, listen_timeout: 60000");
    // Not running: non-zero, silently.
    let out = ready(dir.path(), false);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty() && out.stderr.is_empty());

    let h = Hotrun::start_with(
        Command::new(HOTRUN)
            .current_dir(dir.path())
            .env("READY_DELAY", "1500"),
    );
    h.wait_for("listening on");
    // Starting: not ready yet.
    let out = ready(dir.path(), true);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not ready: web|0 is starting"), "{err}");
    wait_until("ready", || ready(dir.path(), false).status.success());
    assert!(ready(dir.path(), false).stdout.is_empty());

    // A failed reload keeps the old instances online: still ready.
    std::fs::write(dir.path().join("mode.txt"), "crash").unwrap();
    assert_eq!(hotrun_cmd(dir.path(), &["reload"]).status.code(), Some(1));
    assert!(ready(dir.path(), false).status.success());
}

#[test]
fn status_ready_fails_with_an_errored_app() {
    let dir = config_dir(&format!(
        "module.exports = {{ apps: [
            {{ name: 'ok', script: '{}' }},
            {{ name: 'crashy', script: '{}', max_restarts: 2, min_uptime: 5000 }}] }};\n",
        app("graceful.js"),
        app("crash.js")
    ));
    let h = Hotrun::start(dir.path(), &[]);
    h.wait_for("crashy errored");
    let out = ready(dir.path(), true);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("crashy|0 is errored"));
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let dir = http_config("instances: 2");
    let mut h = Hotrun::start(dir.path(), &["--log-format", "json"]);
    h.wait_for_n("listening on", 2);
    h.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(h.wait_exit().success());
    let out = h.output();
    let mut apps = 0;
    for line in out.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: not JSON: {line:?}"));
        for field in ["time", "app", "instance", "stream", "message"] {
            assert!(v.get(field).is_some(), "{field} missing in {line}");
        }
        if v["app"] == "web" {
            apps += 1;
            assert!(v["instance"].as_u64().unwrap() < 2);
            assert!(v["stream"] == "stdout" || v["stream"] == "stderr");
        } else {
            assert_eq!(v["stream"], "hotrun");
        }
    }
    assert!(apps >= 2, "{out}");
}

#[test]
fn hotrun_exits_with_the_code_of_the_app_that_failed_last() {
    let dir = config_dir(&format!(
        "module.exports = {{ apps: [{{ name: 'job', script: '{}', autorestart: false }}] }};\n",
        app("crash.js")
    ));
    let mut h = Hotrun::start(dir.path(), &[]);
    assert_eq!(h.wait_exit().code(), Some(1), "{}", h.output());
    assert!(h
        .output()
        .contains("no instance is running any more; exiting"));
}

#[test]
fn logs_shows_recent_lines_and_follows_new_ones() {
    let dir = http_config("instances: 2");
    let h = Hotrun::start(dir.path(), &[]);
    h.wait_for_n("listening on", 2);
    wait_online(dir.path());

    let out = hotrun_cmd(dir.path(), &["logs", "--lines", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with("web|") && text.contains(" | listening on"),
        "{text}"
    );

    let out = hotrun_cmd(dir.path(), &["logs", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no app named nope"));

    // Follow: a reload's new instances print, and the follower sees it.
    let mut follower = std::process::Command::new(HOTRUN)
        .args(["logs", "web", "--lines", "0", "--follow"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    // The follower is registered once its request is answered; reload until it sees lines.
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + SLOW;
    while seen.len() < 2 && std::time::Instant::now() < deadline {
        assert!(hotrun_cmd(dir.path(), &["reload"]).status.success());
        while let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
            seen.push(line);
        }
    }
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(
        seen.iter()
            .filter(|l| l.contains(" | listening on"))
            .count()
            >= 2,
        "{seen:?}"
    );
    drop(h);
}

#[test]
fn init_writes_a_file_that_runs_the_app_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(app("http.js"), dir.path().join("server.js")).unwrap();
    std::fs::write(
        dir.path().join("package.json"),
        r#"{"name": "shop", "scripts": {"start": "node server.js"}}"#,
    )
    .unwrap();
    let out = hotrun_cmd(dir.path(), &["init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.path().join("ecosystem.config.js")).unwrap();
    assert!(
        text.contains("script: 'server.js'") && text.contains("name: 'shop'"),
        "{text}"
    );

    // It loads, and it runs the app: a check with a reload passes.
    let out = Command::new(HOTRUN)
        .arg("check")
        .current_dir(dir.path())
        .env("PORT", free_port().to_string())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("hotrun check: ok"), "{said}");

    let again = hotrun_cmd(dir.path(), &["init"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwrites"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ecosystem.config.js")).unwrap(),
        text
    );
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = hotrun_cmd(dir.path(), &["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.len() > 500 && text.contains("hotrun") && text.contains("reload"),
            "{shell}"
        );
    }
}

#[test]
fn the_readme_quick_start_runs_the_demo() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let line = readme
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("cargo run --release -- "))
        .expect("the README's run command");
    // The same arguments, given to the binary cargo built for this test run.
    let args: Vec<&str> = line["cargo run --release -- ".len()..]
        .split_whitespace()
        .collect();
    assert!(
        readme.contains("\n    cargo test\n"),
        "the README's test command"
    );
    let mut h = Hotrun::start(root, &args);
    // Client commands find the same file from its folder.
    let st = wait_online(&root.join("fixtures/demo"));
    assert_eq!(pids(&st, "demo").len(), 3);
    for _ in 0..6 {
        let body = common::http::get(8888).expect("the demo answers on 8888");
        assert!(
            body.contains("hello from instance") && body.contains("production"),
            "{body}"
        );
    }
    h.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(h.wait_exit().success());
}
