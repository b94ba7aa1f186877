//! Controlling a running hotrun: SIGHUP, `hotrun restart`, `hotrun stop`, a crash of a
//! serving instance, and `shutdown_with_message` during a reload.

mod common;

use std::process::Command;

use common::http::free_port;
use common::*;
use nix::sys::signal::Signal;

fn http_app(port: u16, extra: &str) -> tempfile::TempDir {
    config_dir(&format!(
        "module.exports = {{ apps: [{{ name: 'web', script: '{}', wait_ready: true,
           env: {{ HTTP_PORT: {port} }}, {extra} }}] }};\n",
        app("http.js")
    ))
}

#[test]
fn sighup_reloads_every_app() {
    let dir = http_app(free_port(), "instances: 2");
    let h = Hotrun::start(dir.path(), &[]);
    let before = pids(&wait_online(dir.path()), "web");
    h.signal(Signal::SIGHUP);
    h.wait_for("web: reload done, every instance replaced");
    let st = status(dir.path());
    assert_eq!(app_status(&st, "web")["last_reload"]["trigger"], "SIGHUP");
    let after = pids(&st, "web");
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "{before:?} -> {after:?}"
    );
}

#[test]
fn restart_stops_then_starts_and_stop_ends_hotrun() {
    let dir = http_app(free_port(), "instances: 2");
    let mut h = Hotrun::start(dir.path(), &[]);
    let before = pids(&wait_online(dir.path()), "web");
    let out = hotrun_cmd(dir.path(), &["restart", "web"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    h.wait_for("web: restart requested: stop, then start");
    let after = pids(&wait_online(dir.path()), "web");
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "{before:?} -> {after:?}"
    );

    let out = hotrun_cmd(dir.path(), &["restart", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no app named nope (apps: web)"));

    let out = hotrun_cmd(dir.path(), &["stop"]);
    assert!(out.status.success());
    assert_eq!(h.wait_exit().code(), Some(0), "{}", h.output());
    for pid in after {
        assert!(!alive(pid as i32));
    }
}

#[test]
fn a_crash_of_a_serving_instance_restarts_just_that_slot() {
    let dir = http_app(free_port(), "instances: 3");
    let _h = Hotrun::start(dir.path(), &[]);
    let before = pids(&wait_online(dir.path()), "web");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(before[1] as i32),
        Signal::SIGKILL,
    )
    .unwrap();
    wait_until("slot 1 is back online with a new pid", || {
        let st = status(dir.path());
        let web = app_status(&st, "web");
        let inst = &web["instances"][1];
        inst["state"] == "online" && inst["pid"] != before[1] && inst["restarts"] == 1
    });
    let after = pids(&status(dir.path()), "web");
    assert_eq!((after[0], after[2]), (before[0], before[2]));
}

#[test]
fn shutdown_with_message_reaches_old_instances_during_a_reload() {
    let port = free_port();
    let dir = config_dir(&format!(
        "module.exports = {{ apps: [{{ name: 'msg', script: '{}', instances: 2, wait_ready: true,
           shutdown_with_message: true, kill_timeout: 10000, env: {{ PORT: {port} }} }}] }};\n",
        app("message_stop.js")
    ));
    let h = Hotrun::start_with(Command::new(HOTRUN).current_dir(dir.path()));
    let before = pids(&wait_online(dir.path()), "msg");
    assert!(hotrun_cmd(dir.path(), &["reload"]).status.success());
    for pid in &before {
        h.wait_for(&format!("got shutdown message pid={pid}"));
    }
    assert_eq!(h.count("got SIGINT"), 0, "{}", h.output());
}

#[test]
fn while_hotrun_stops_reload_and_restart_are_refused_and_nothing_starts() {
    let dir = config_dir(&format!(
        "module.exports = {{ apps: [{{ name: 'stubborn', script: '{}', instances: 2,
           kill_timeout: 3000 }}] }};\n",
        app("stubborn.js")
    ));
    let mut h = Hotrun::start(dir.path(), &[]);
    h.wait_for_n("stubborn up", 2);
    h.signal(Signal::SIGTERM);
    h.wait_for_n("stubborn ignores SIGINT", 2);
    for args in [&["reload"][..], &["restart"][..]] {
        let out = hotrun_cmd(dir.path(), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("hotrun is stopping"),
            "{args:?}"
        );
    }
    assert_eq!(h.wait_exit().code(), Some(0), "{}", h.output());
    assert_eq!(
        h.count("stubborn up"),
        2,
        "no instance started during the stop"
    );
}

#[test]
fn status_shows_each_instances_cpu_share_over_the_last_interval() {
    let dir = config_dir(
        "module.exports = { apps: [
           { name: 'busy', script: 'sh', args: ['-c', 'while :; do :; done'] },
           { name: 'idle', script: 'sh', args: ['-c', 'exec sleep 600'] },
         ] };\n",
    );
    let h = Hotrun::start(dir.path(), &[]);
    wait_online(dir.path());
    let cpu = |st: &serde_json::Value, app: &str| {
        app_status(st, app)["instances"][0]["cpu_percent"]
            .as_f64()
            .unwrap_or(-1.0)
    };
    // Each reading covers the time since the previous one (at least 200 ms). On a loaded
    // machine the loop may get less than a core for a while: read until it shows.
    let mut seen = Vec::new();
    wait_until("the busy instance shows over 50% of a core", || {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let st = status(dir.path());
        let (busy, idle) = (cpu(&st, "busy"), cpu(&st, "idle"));
        seen.push((busy, idle));
        assert!((0.0..5.0).contains(&idle), "idle at {idle}%: {seen:?}");
        busy > 50.0
    });
    // The table has the column.
    let out = hotrun_cmd(dir.path(), &["status"]);
    let table = String::from_utf8_lossy(&out.stdout);
    let header = table.lines().next().unwrap_or("");
    assert!(
        header.contains("cpu") && header.contains("memory"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("idle") && l.contains(" 0% ")),
        "{table}"
    );
    drop(h);
}

#[test]
fn ls_lists_every_running_hotrun_of_the_user_one_line_per_app() {
    // A runtime folder of the test's own, so other tests' hotruns are not listed.
    let runtime = tempfile::tempdir().unwrap();
    let one = config_dir(
        "module.exports = { apps: [{ name: 'api', script: 'sh', instances: 2,
           args: ['-c', 'exec sleep 600'] }] };\n",
    );
    let two = config_dir(
        "module.exports = { apps: [{ name: 'worker', script: 'sh', args: ['-c', 'exec sleep 600'] },
           { name: 'cron', script: 'sh', args: ['-c', 'exec sleep 600'] }] };\n",
    );
    let start = |dir: &std::path::Path| {
        Hotrun::start_with(
            Command::new(HOTRUN)
                .current_dir(dir)
                .env("HOTRUN_RUNTIME_DIR", runtime.path()),
        )
    };
    let (_a, _b) = (start(one.path()), start(two.path()));
    let ls = || {
        let out = Command::new(HOTRUN)
            .arg("ls")
            .env("HOTRUN_RUNTIME_DIR", runtime.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut last = String::new();
    wait_until("hotrun ls shows both hotruns' apps online", || {
        last = ls();
        ["api ", "worker ", "cron "].iter().all(|a| {
            last.lines()
                .any(|l| l.starts_with(a) && !l.contains(" 0/") && !l.contains(" 1/2 "))
        })
    });
    let config = |d: &tempfile::TempDir| d.path().join("ecosystem.config.js").display().to_string();
    let line = |app: &str| {
        last.lines()
            .find(|l| l.starts_with(app))
            .unwrap()
            .to_string()
    };
    assert!(
        line("api ").contains(" 2/2 ") && line("api ").ends_with(&config(&one)),
        "{last}"
    );
    assert!(line("worker ").ends_with(&config(&two)), "{last}");
    assert!(last.lines().next().unwrap().starts_with("app"), "{last}");
    assert_eq!(last.lines().count(), 4, "{last}");
}
