//! Rolling faster and safer, and build-then-swap: `max_surge`, `min_ready`,
//! `ready_pattern`, `build`.

mod common;

use std::process::Command;

use common::http::{free_port, Load};
use common::*;

#[test]
fn max_surge_3_replaces_3_slots_at_once() {
    let port = free_port();
    let dir = http_dir(port, "instances: 6, max_surge: 3");
    let events_dir = tempfile::tempdir().unwrap();
    let events = events_dir.path().join("events.log");
    let h = Hotrun::start_with(
        Command::new(HOTRUN)
            .current_dir(dir.path())
            .env("EVENTS_FILE", &events)
            .env("READY_DELAY", "400"),
    );
    let before = pids(&wait_online(dir.path()), "web");
    let load = Load::start(port, false);
    let out = hotrun_cmd(dir.path(), &["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    h.wait_for("web: rolling reload (hotrun reload), 6 instance(s), 3 at a time");
    let stats = load.finish();
    assert_eq!(stats.failed, 0, "{:?}", stats.errors);
    let after = pids(&status(dir.path()), "web");
    assert!(after.iter().all(|p| !before.contains(p)));
    // 3 successors start at once beside the 6 serving; the next slots start while the
    // replaced ones drain, so up to 3 old instances may still be stopping beside them.
    let most = most_alive_at_once(&events);
    assert!(
        (9..=12).contains(&most),
        "{most} alive at once: 6 serving + 3 successors + 3 draining at most"
    );
}

#[test]
fn min_ready_catches_a_successor_that_dies_soon_after_ready() {
    let port = free_port();
    let dir = http_dir(port, "instances: 2, min_ready: 1000");
    let _h = Hotrun::start(dir.path(), &[]);
    let before = pids(&wait_online(dir.path()), "web");
    std::fs::write(dir.path().join("mode.txt"), "flaky").unwrap();
    let out = hotrun_cmd(dir.path(), &["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("before the end of min_ready (1000 ms)"),
        "{err}"
    );
    assert_eq!(pids(&status(dir.path()), "web"), before);
    std::fs::remove_file(dir.path().join("mode.txt")).unwrap();
    assert!(hotrun_cmd(dir.path(), &["reload"]).status.success());
}

#[test]
fn ready_pattern_makes_an_output_line_the_ready_signal() {
    let dir = config_dir(&format!(
        "module.exports = {{ apps: [{{ name: 'next', script: '{}', instances: 2,
           ready_pattern: 'Ready in \\\\d+ms', min_uptime: 60000 }}] }};\n",
        app("ready_line.js")
    ));
    let _h = Hotrun::start(dir.path(), &[]);
    let st = wait_online(dir.path());
    for inst in app_status(&st, "next")["instances"].as_array().unwrap() {
        assert_eq!(inst["ready_by"], "pattern", "{st}");
    }
    let out = hotrun_cmd(dir.path(), &["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_bad_ready_pattern_is_a_config_error() {
    let dir = config_dir(&format!(
        "module.exports = {{ apps: [{{ name: 'x', script: '{}', ready_pattern: 'Ready (' }}] }};\n",
        app("ready_line.js")
    ));
    let out = hotrun_cmd(dir.path(), &["config"]);
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ready_pattern must be a regular expression"),
        "{err}"
    );
}

#[test]
fn a_failing_build_keeps_every_old_instance_and_a_good_one_swaps() {
    let port = free_port();
    let build = "if [ -f fail ]; then echo 'compile error: src/app.ts(3,1)' >&2; exit 3; fi; echo built > built.txt";
    let dir = http_dir(port, &format!("instances: 2, build: \"{build}\""));
    let h = Hotrun::start(dir.path(), &[]);
    h.wait_for("web: build done in");
    let before = pids(&wait_online(dir.path()), "web");
    assert!(
        dir.path().join("built.txt").exists(),
        "the build ran before the first start"
    );
    let load = Load::start(port, false);

    std::fs::write(dir.path().join("fail"), "").unwrap();
    let out = hotrun_cmd(dir.path(), &["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("web: reload failed: build failed: exited with exit code 3"),
        "the app's own failure is told by its name: {err}"
    );
    assert!(!err.contains("web|"), "no instance is blamed: {err}");
    assert!(err.contains("compile error: src/app.ts(3,1)"), "{err}");
    h.wait_for("web|build | compile error");
    let st = status(dir.path());
    assert_eq!(pids(&st, "web"), before);
    assert_eq!(app_status(&st, "web")["last_reload"]["result"], "failed");

    std::fs::remove_file(dir.path().join("fail")).unwrap();
    let out = hotrun_cmd(dir.path(), &["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = load.finish();
    assert_eq!(stats.failed, 0, "{:?}", stats.errors);
    let after = pids(&status(dir.path()), "web");
    assert!(after.iter().all(|p| !before.contains(p)));
}

#[test]
fn a_build_that_writes_into_watched_paths_does_not_loop() {
    let port = free_port();
    let dir = http_dir(
        port,
        "instances: 1, watch: true, build: 'mkdir -p out && date +%N > out/bundle.js'",
    );
    let h = Hotrun::start(dir.path(), &[]);
    h.wait_for("web: build done in");
    wait_online(dir.path());
    std::fs::write(dir.path().join("src.js"), "x").unwrap();
    wait_until("one watch reload is done", || {
        let st = status(dir.path());
        app_status(&st, "web")["reloads"] == 1 && app_status(&st, "web")["reloading"] == false
    });
    // The reload's build wrote out/bundle.js inside the watched folder: no second reload.
    // A real change afterwards reloads again, so the watcher is alive.
    std::fs::write(dir.path().join("src.js"), "y").unwrap();
    wait_until("the second reload is done", || {
        app_status(&status(dir.path()), "web")["reloads"] == 2
    });
    assert_eq!(h.count("changed ("), 2, "{}", h.output());
}

#[test]
fn hotrun_events_shows_a_full_reload_as_json_lines() {
    let port = free_port();
    let dir = http_dir(port, "instances: 2, build: 'true'");
    let _h = Hotrun::start(dir.path(), &[]);
    wait_online(dir.path());
    let mut follower = Command::new(HOTRUN)
        .args(["events", "--log-format", "json"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Its answer comes once it follows: reload only then.
    let mut stderr = std::io::BufReader::new(follower.stderr.take().unwrap());
    let mut answer = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut answer).unwrap();
    assert!(answer.contains("following reload events"), "{answer}");
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    // `hotrun reload` prints the same events as they happen, then its answer.
    let mut events = Vec::new();
    let deadline = std::time::Instant::now() + SLOW;
    let mut reload_out = String::new();
    while !events
        .iter()
        .any(|e: &serde_json::Value| e["event"] == "reload_done")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "events so far: {events:?}"
        );
        if events.is_empty() {
            let out = hotrun_cmd(dir.path(), &["reload"]);
            assert!(out.status.success());
            reload_out = String::from_utf8_lossy(&out.stdout).to_string();
        }
        if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
            events.push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}")));
        }
    }
    let _ = follower.kill();
    let _ = follower.wait();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for want in [
        "build_started",
        "build_done",
        "reload_started",
        "spawned",
        "ready",
        "stopped",
        "reload_done",
    ] {
        assert!(kinds.contains(&want), "{want} missing from {kinds:?}");
    }
    for e in &events {
        for field in ["time", "event", "app", "message"] {
            assert!(e.get(field).is_some(), "{field} missing in {e}");
        }
    }
    let ready = events.iter().find(|e| e["event"] == "ready").unwrap();
    assert_eq!(ready["ready_by"], "message");
    assert!(ready["after_ms"].as_u64().is_some() && ready["old_pid"].as_i64().is_some());
    assert!(
        reload_out.contains("reload 2/2: new pid") && reload_out.contains("reload done"),
        "{reload_out}"
    );
}
