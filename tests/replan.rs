//! Reloads apply what changed in the ecosystem file: env (changed, added, removed),
//! scaling without touching other instances, apps added and removed, a broken file that
//! touches nothing, `--dry-run`, and `hotrun watch` reloading on an edit of the file.

mod common;

use std::path::Path;

use common::http::{free_port, get, Load};
use common::*;

fn write_config(dir: &Path, port: u16, instances: u32, env: &str, more_apps: &str) {
    let config = format!(
        "module.exports = {{ apps: [{{ name: 'web', script: 'server.js', instances: {instances},
           wait_ready: true, env: {{ HTTP_PORT: {port}, ECHO_VARS: 'API_URL,OLD_FLAG,NEW_FLAG', {env} }} }},
           {more_apps} ] }};\n"
    );
    std::fs::write(dir.join("ecosystem.config.js"), config).unwrap();
}

fn app_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(app("http.js"), dir.path().join("server.js")).unwrap();
    dir
}

#[test]
fn a_reload_applies_env_changes_and_says_what_changed() {
    let dir = app_dir();
    let port = free_port();
    write_config(dir.path(), port, 2, "API_URL: 'http://a', OLD_FLAG: 1", "");
    let h = Hotrun::start(dir.path(), &[]);
    wait_online(dir.path());
    let body = get(port).unwrap();
    assert!(
        body.contains("API_URL=http://a OLD_FLAG=1 NEW_FLAG=<unset>"),
        "{body}"
    );

    write_config(
        dir.path(),
        port,
        2,
        "API_URL: 'http://b', NEW_FLAG: 'yes'",
        "",
    );
    let out = hotrun_cmd(dir.path(), &["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    h.wait_for("web: env API_URL changed, NEW_FLAG added, OLD_FLAG removed");
    for _ in 0..10 {
        let body = get(port).unwrap();
        assert!(
            body.contains("API_URL=http://b OLD_FLAG=<unset> NEW_FLAG=yes"),
            "{body}"
        );
    }
    // Values never appear in what hotrun says.
    assert!(!h.output().contains("http://b"), "{}", h.output());

    // Nothing changed but the code: no line about the configuration.
    let out = hotrun_cmd(dir.path(), &["reload"]);
    assert!(out.status.success());
    assert_eq!(h.count("web: env"), 1, "{}", h.output());
}

#[test]
fn instances_3_to_5_to_2_keep_the_pids_of_untouched_slots() {
    let dir = app_dir();
    let port = free_port();
    write_config(dir.path(), port, 3, "", "");
    let h = Hotrun::start(dir.path(), &[]);
    let three = pids(&wait_online(dir.path()), "web");
    assert_eq!(three.len(), 3);

    write_config(dir.path(), port, 5, "", "");
    assert!(hotrun_cmd(dir.path(), &["reload"]).status.success());
    h.wait_for("web: instances 3 -> 5");
    let five = pids(&wait_online(dir.path()), "web");
    assert_eq!(five.len(), 5);
    assert_eq!(
        &five[..3],
        &three[..],
        "the first three slots are untouched"
    );

    write_config(dir.path(), port, 2, "", "");
    assert!(hotrun_cmd(dir.path(), &["reload"]).status.success());
    h.wait_for("web: instances 5 -> 2");
    wait_until("two instances are left", || {
        pids(&status(dir.path()), "web").len() == 2
    });
    let two = pids(&status(dir.path()), "web");
    assert_eq!(&two[..], &three[..2], "slots 0 and 1 are untouched");
    for gone in &five[2..] {
        wait_until("the surplus instances are gone", || !alive(*gone as i32));
    }
    assert_eq!(
        app_status(&status(dir.path()), "web")["reloads"],
        0,
        "scaling is no reload"
    );
}

#[test]
fn a_broken_file_at_reload_touches_nothing_and_names_the_line() {
    let dir = app_dir();
    let port = free_port();
    write_config(dir.path(), port, 2, "", "");
    let _h = Hotrun::start(dir.path(), &[]);
    let before = pids(&wait_online(dir.path()), "web");
    let load = Load::start(port, false);
    wait_until("the load is flowing", || load.completed() > 20);

    std::fs::write(
        dir.path().join("ecosystem.config.js"),
        "module.exports = {\n  apps: [{ name: 'web', script: 'server.js', instances: 'three' }]\n};\n",
    )
    .unwrap();
    let out = hotrun_cmd(dir.path(), &["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("ecosystem.config.js:2:57: instances must be a number"),
        "{err}"
    );
    let dry = hotrun_cmd(dir.path(), &["reload", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(1));

    // The next good edit reloads normally.
    write_config(dir.path(), port, 2, "API_URL: 'fixed'", "");
    assert!(hotrun_cmd(dir.path(), &["reload"]).status.success());
    let stats = load.finish();
    assert_eq!(stats.failed, 0, "failures: {:?}", stats.errors);
    let after = pids(&status(dir.path()), "web");
    assert!(after.iter().all(|p| !before.contains(p)));
}

#[test]
fn dry_run_says_what_would_change_and_changes_nothing() {
    let dir = app_dir();
    let port = free_port();
    write_config(dir.path(), port, 2, "API_URL: 'a'", "");
    let _h = Hotrun::start(dir.path(), &[]);
    let before = pids(&wait_online(dir.path()), "web");
    write_config(
        dir.path(),
        port,
        3,
        "API_URL: 'b'",
        &format!("{{ name: 'worker', script: '{}' }}", app("graceful.js")),
    );
    let out = hotrun_cmd(dir.path(), &["reload", "--dry-run"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("web: would reload: env API_URL changed; instances 2 -> 3"),
        "{said}"
    );
    assert!(
        said.contains("worker: would start (new in the file)"),
        "{said}"
    );
    let st = status(dir.path());
    assert_eq!(pids(&st, "web"), before);
    assert_eq!(st["apps"].as_array().unwrap().len(), 1);
}

#[test]
fn apps_added_to_the_file_start_and_removed_ones_stop() {
    let dir = app_dir();
    let port = free_port();
    let worker = format!("{{ name: 'worker', script: '{}' }}", app("graceful.js"));
    write_config(dir.path(), port, 1, "", &worker);
    let h = Hotrun::start(dir.path(), &[]);
    let st = wait_online(dir.path());
    let worker_pid = pids(&st, "worker")[0];

    write_config(
        dir.path(),
        port,
        1,
        "",
        &format!("{{ name: 'jobs', script: '{}' }}", app("graceful.js")),
    );
    assert!(hotrun_cmd(dir.path(), &["reload"]).status.success());
    h.wait_for("worker: gone from the ecosystem file: stopping it");
    h.wait_for("jobs: new in the ecosystem file: starting it");
    let st = wait_online(dir.path());
    let names: Vec<&str> = st["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "jobs"]);
    wait_until("the removed app's instance is gone", || {
        !alive(worker_pid as i32)
    });
}

#[test]
fn under_hotrun_watch_an_edit_of_the_file_reloads_it() {
    let dir = app_dir();
    let port = free_port();
    write_config(dir.path(), port, 2, "API_URL: 'one'", "");
    let h = Hotrun::start(dir.path(), &["watch"]);
    h.wait_for("watching for changes");
    wait_online(dir.path());
    write_config(dir.path(), port, 2, "API_URL: 'two'", "");
    h.wait_for("the ecosystem file changed -> reload");
    h.wait_for("web: env API_URL changed");
    wait_until("the new env is served", || {
        get(port)
            .map(|b| b.contains("API_URL=two"))
            .unwrap_or(false)
            && app_status(&status(dir.path()), "web")["reloading"] == false
    });
    for _ in 0..6 {
        assert!(get(port).unwrap().contains("API_URL=two"));
    }
}

#[test]
fn scaling_down_then_up_at_once_ends_with_the_new_count_online() {
    let dir = app_dir();
    let port = free_port();
    write_config(dir.path(), port, 4, "", "");
    let _h = Hotrun::start(dir.path(), &[]);
    let four = pids(&wait_online(dir.path()), "web");
    write_config(dir.path(), port, 2, "", "");
    assert!(hotrun_cmd(dir.path(), &["reload", "--no-wait"])
        .status
        .success());
    write_config(dir.path(), port, 3, "", "");
    assert!(hotrun_cmd(dir.path(), &["reload", "--no-wait"])
        .status
        .success());
    wait_until("three instances are online", || {
        let st = status(dir.path());
        let inst = app_status(&st, "web")["instances"]
            .as_array()
            .unwrap()
            .clone();
        inst.len() == 3 && inst.iter().all(|i| i["state"] == "online")
    });
    let three = pids(&status(dir.path()), "web");
    assert_eq!(&three[..2], &four[..2], "slots 0 and 1 were never touched");
}

/// An app with a `build` whose instance ignores SIGINT is removed from the file and put
/// back within its `kill_timeout`: the old instance (and its child) is still SIGKILLed at
/// its kill_timeout, the app runs one new instance, and hotrun holds no pipe of the old
/// one afterwards.
#[test]
fn an_app_put_back_while_its_old_instance_still_stops_kills_it_at_kill_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let stubborn = format!(
        "{{ name: 'web', script: '{}', build: 'true', kill_timeout: 3000 }}",
        app("stubborn.js")
    );
    let keeper = format!("{{ name: 'keeper', script: '{}' }}", app("graceful.js"));
    let write = |apps: &[&str]| {
        let body = format!("module.exports = {{ apps: [{}] }};\n", apps.join(", "));
        std::fs::write(dir.path().join("ecosystem.config.js"), body).unwrap();
    };
    write(&[&stubborn, &keeper]);
    let h = Hotrun::start(dir.path(), &[]);
    let line = h.wait_for("stubborn up");
    let (old, child) = (field(&line, "pid"), field(&line, "child"));
    wait_online(dir.path());
    let fds_before = std::fs::read_dir(format!("/proc/{}/fd", h.pid()))
        .unwrap()
        .count();

    write(&[&keeper]);
    assert!(hotrun_cmd(dir.path(), &["reload"]).status.success());
    h.wait_for("web: gone from the ecosystem file: stopping it");
    h.wait_for("stubborn ignores SIGINT");
    let asked_to_stop = std::time::Instant::now();
    write(&[&stubborn, &keeper]);
    assert!(hotrun_cmd(dir.path(), &["reload"]).status.success());
    h.wait_for("web: back in the ecosystem file: starting it");

    // SIGKILL at kill_timeout (3 s), whatever happened to the app meanwhile.
    wait_until("the old instance and its child are killed", || {
        !alive(old) && !alive(child)
    });
    let took = asked_to_stop.elapsed();
    assert!(
        took < std::time::Duration::from_secs(10),
        "killed after {took:?}"
    );
    wait_until("web runs one new instance, online", || {
        let st = status(dir.path());
        let web = app_status(&st, "web");
        web["instances"].as_array().unwrap().len() == 1
            && web["instances"][0]["state"] == "online"
            && web["instances"][0]["pid"] != old
    });
    let new_pid = pids(&status(dir.path()), "web")[0] as i32;
    assert!(
        h.output().contains(&format!("stubborn up pid={new_pid}")),
        "the new instance is the one that runs"
    );
    // The old instance's pipes are closed: as many fds as with one instance before.
    let mut fds_after = 0;
    wait_until("hotrun's fds back to what one instance needs", || {
        fds_after = std::fs::read_dir(format!("/proc/{}/fd", h.pid()))
            .unwrap()
            .count();
        fds_after <= fds_before
    });
}

#[test]
fn a_port_changed_in_the_file_is_closed_once_its_instances_are_replaced() {
    // The port from the env (learned when the app listens) and a declared one (`port`).
    for declared in [false, true] {
        let dir = app_dir();
        let (old_port, new_port) = (free_port(), free_port());
        let write = |port: u16| {
            let key = if declared {
                format!("port: {port},")
            } else {
                String::new()
            };
            std::fs::write(
                dir.path().join("ecosystem.config.js"),
                format!(
                    "module.exports = {{ apps: [{{ name: 'web', script: 'server.js', instances: 2, {key}
                       wait_ready: true, env: {{ HTTP_PORT: {port} }} }}] }};\n"
                ),
            )
            .unwrap();
        };
        write(old_port);
        let _h = Hotrun::start(dir.path(), &[]);
        wait_online(dir.path());
        assert!(get(old_port).is_ok());
        write(new_port);
        let out = hotrun_cmd(dir.path(), &["reload"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            get(new_port).is_ok(),
            "declared {declared}: the new port serves"
        );
        // The old instances are gone: nobody serves the old port, so it refuses.
        wait_until("the old port is closed", || {
            matches!(
                std::net::TcpStream::connect(("127.0.0.1", old_port)),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
            )
        });
    }
}
