//! Zero downtime, with real processes and real HTTP: N instances on one port, replaced
//! one slot at a time under load without a failed request; broken versions never replace
//! working ones; requests during a reload fold into one more.

mod common;

use std::path::Path;
use std::process::Command;

use common::http::{free_port, get, Load};
use common::node_load::{Clients, NodeLoad};
use common::*;

/// The seed's ecosystem file, verbatim but for the port, with a seed-style app as its
/// `server.js`.
fn seed_dir(port: u16) -> tempfile::TempDir {
    let seed = std::fs::read_to_string(fixtures().join("configs/seed/ecosystem.config.js"))
        .expect("the seed's file");
    assert!(seed.contains("HTTP_PORT: 8888"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ecosystem.config.js"),
        seed.replace("HTTP_PORT: 8888", &format!("HTTP_PORT: {port}")),
    )
    .unwrap();
    std::fs::copy(app("http.js"), dir.path().join("server.js")).unwrap();
    dir
}

fn reload(dir: &Path) -> std::process::Output {
    hotrun_cmd(dir, &["reload"])
}

/// One reload while `load` runs; then 300 more requests, so the new instances answer
/// too. Returns what the load saw, which must have no failure.
fn reload_under(dir: &Path, load: Load) -> common::http::Stats {
    let out = reload(dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = load.completed();
    wait_until("the new instances answer too", || {
        load.completed() > after + 300
    });
    let stats = load.finish();
    assert_eq!(stats.failed, 0, "failures: {:?}", stats.errors);
    stats
}

#[test]
fn the_seed_app_reloads_ten_times_under_load_without_a_failed_request() {
    let port = free_port();
    let dir = seed_dir(port);
    // Outside the app's folder, which the seed's `watch: true` watches.
    let elsewhere = tempfile::tempdir().unwrap();
    let events = elsewhere.path().join("events.log");
    let _h = Hotrun::start_with(
        Command::new(HOTRUN)
            .args(["--env", "production"])
            .current_dir(dir.path())
            .env("EVENTS_FILE", &events),
    );
    let first = wait_online(dir.path());
    let mut before = pids(&first, "web-nextjs-server");
    assert_eq!(before.len(), 3);

    let fresh = Load::start(port, false);
    let kept = Load::start(port, true);
    wait_until("the load is flowing", || {
        fresh.completed() > 20 && kept.completed() > 20
    });
    for n in 1..=10 {
        let out = reload(dir.path());
        assert!(
            out.status.success(),
            "reload {n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let after = pids(&status(dir.path()), "web-nextjs-server");
        for (slot, (old, new)) in before.iter().zip(&after).enumerate() {
            assert_ne!(old, new, "reload {n}: slot {slot} was not replaced");
        }
        before = after;
    }
    let fresh = fresh.finish();
    let kept = kept.finish();
    eprintln!(
        "new connection per request: {} ok, {} failed; keep-alive: {} ok, {} failed, {} retried on a reused idle connection",
        fresh.ok, fresh.failed, kept.ok, kept.failed, kept.retries
    );
    assert_eq!(fresh.failed, 0, "failures: {:?}", fresh.errors);
    assert_eq!(kept.failed, 0, "failures: {:?}", kept.errors);
    assert!(fresh.ok > 100 && kept.ok > 100);
    // 3 instances at start + 3 per reload answered.
    assert!(
        fresh.pids.len() + kept.pids.len() > 3,
        "requests reached new instances"
    );

    let st = status(dir.path());
    assert_eq!(app_status(&st, "web-nextjs-server")["reloads"], 10);
    // One successor at a time, and at most 2 old instances draining beside it: never more
    // than three instances beyond the three (one beyond them at the least).
    let most = most_alive_at_once(&events);
    assert!((4..=6).contains(&most), "{most} instances alive at once");
}

#[test]
fn a_broken_new_version_fails_the_reload_and_the_old_instances_keep_serving() {
    let port = free_port();
    let dir = http_dir(
        port,
        "instances: 2, listen_timeout: 2000, kill_timeout: 3000",
    );
    let _h = Hotrun::start(dir.path(), &[]);
    let old = pids(&wait_online(dir.path()), "web");
    let load = Load::start(port, false);
    wait_until("the load is flowing", || load.completed() > 20);

    // A version that exits at start.
    std::fs::write(dir.path().join("mode.txt"), "crash").unwrap();
    let out = reload(dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("reload failed: the new instance exited (exit code 3)"),
        "{err}"
    );
    assert!(
        err.contains("broken build: cannot start"),
        "the reason shows its stderr: {err}"
    );
    assert_eq!(pids(&status(dir.path()), "web"), old);

    // A version that never says it is ready.
    std::fs::write(dir.path().join("mode.txt"), "hang").unwrap();
    let out = reload(dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not ready within listen_timeout (2000 ms)"),
        "{err}"
    );
    let st = status(dir.path());
    assert_eq!(pids(&st, "web"), old);
    assert_eq!(app_status(&st, "web")["last_reload"]["result"], "failed");
    assert_eq!(app_status(&st, "web")["reloads"], 0);

    // Fixed: the next reload goes through.
    std::fs::remove_file(dir.path().join("mode.txt")).unwrap();
    assert!(reload(dir.path()).status.success());
    let stats = load.finish();
    assert_eq!(stats.failed, 0, "failures: {:?}", stats.errors);
    let new = pids(&status(dir.path()), "web");
    assert!(new.iter().all(|p| !old.contains(p)));
}

#[test]
fn a_new_version_that_dies_after_taking_its_slot_fails_the_reload_and_the_old_ones_serve_on() {
    // PM2's most asked-for fix (#3429, #2628): a version that says ready and exits 30 ms
    // later, reloaded with the default min_ready (0) under 16 concurrent clients.
    let port = free_port();
    let dir = http_dir(port, "instances: 3");
    let _h = Hotrun::start(dir.path(), &[]);
    let old = pids(&wait_online(dir.path()), "web");
    let load = NodeLoad::start(port, Clients::new(16));
    std::fs::write(dir.path().join("mode.txt"), "dies_after_ready").unwrap();
    let out = reload(dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("web|0 reload failed: the new instance exited (exit code 3) after it had taken its slot"),
        "{err}"
    );
    assert!(
        err.contains("new version crashed after ready"),
        "its stderr: {err}"
    );
    let during = load.finish();
    eprintln!("load during the failed reload: {during:?}");
    assert_eq!(during.hung, 0, "{during:?}");
    // What the dying instance held when it exited is its own loss (each of the 16 clients
    // has one request in flight, and may reach its socket once more before hotrun takes
    // it out of the kernel's choice); nothing else fails.
    assert!(during.failed <= 32, "{during:?}");

    // Afterwards the old instances serve on: the same pids, online, never restarted,
    // answering 16 concurrent clients for 3 s without a failure.
    let after = NodeLoad::start(port, Clients::new(16));
    let until = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::time::Instant::now() < until {
        let st = status(dir.path());
        assert_eq!(pids(&st, "web"), old, "{st}");
        for inst in app_status(&st, "web")["instances"].as_array().unwrap() {
            assert_eq!(inst["state"], "online", "{st}");
            assert_eq!(inst["restarts"], 0, "{st}");
            assert_eq!(inst["reloads"], 0, "a failed reload replaced none: {st}");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let after = after.finish();
    assert_eq!((after.failed, after.hung), (0, 0), "{after:?}");
    assert!(after.ok > 300, "{after:?}");
    let served: std::collections::BTreeSet<i64> =
        after.pids.keys().map(|p| p.parse().unwrap()).collect();
    assert_eq!(served, old.iter().copied().collect(), "{after:?}");
    assert_eq!(
        app_status(&status(dir.path()), "web")["last_reload"]["result"],
        "failed"
    );
}

/// The reason of a failed reload quotes what the dying version wrote last, even when it
/// wrote much just before: its exit is told once its pipes are read to their end. (Which
/// slot fails first depends on the machine: each dies 30 ms after ready, its output read
/// first.)
#[test]
fn a_failed_reload_quotes_the_last_lines_of_a_version_that_wrote_much_before_it_died() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(app("http.js"), dir.path().join("server.js")).unwrap();
    let config = format!(
        "module.exports = {{ apps: [{{ name: 'web', script: 'server.js', wait_ready: true,
           instances: 3, env: {{ HTTP_PORT: {port}, DIE_NOISE: 2000 }} }}] }};\n"
    );
    std::fs::write(dir.path().join("ecosystem.config.js"), config).unwrap();
    let _h = Hotrun::start_quiet(Command::new(HOTRUN).current_dir(dir.path()));
    wait_online(dir.path());
    for n in 0..3 {
        std::fs::write(dir.path().join("mode.txt"), "dies_after_ready").unwrap();
        let out = reload(dir.path());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("noise 1999 / new version crashed after ready (instance "),
            "reload {n}: {err}"
        );
        std::fs::write(dir.path().join("mode.txt"), "ok").unwrap();
        let out = reload(dir.path());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_new_version_that_dies_within_min_ready_fails_the_reload_with_no_failed_request() {
    // The same crashing version with `min_ready` longer than its life: while it settles
    // it gets no connection (its socket is not in the kernel's choice before it takes its
    // slot), so its death costs no request at all.
    let port = free_port();
    let dir = http_dir(port, "instances: 3, min_ready: 1000");
    let _h = Hotrun::start(dir.path(), &[]);
    let old = pids(&wait_online(dir.path()), "web");
    for clients in [Clients::new(16), Clients::new(16).keep_alive()] {
        let load = NodeLoad::start(port, clients);
        std::fs::write(dir.path().join("mode.txt"), "dies_after_ready").unwrap();
        let out = reload(dir.path());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("web|0 reload failed: the new instance exited (exit code 3)")
                && err.contains("before the end of min_ready (1000 ms)"),
            "{err}"
        );
        std::fs::remove_file(dir.path().join("mode.txt")).unwrap();
        let during = load.finish();
        assert_eq!(
            (during.failed, during.hung),
            (0, 0),
            "{clients:?}: {during:?}"
        );
        assert!(during.ok > 100, "{during:?}");
        let served: std::collections::BTreeSet<i64> =
            during.pids.keys().map(|p| p.parse().unwrap()).collect();
        assert_eq!(
            served,
            old.iter().copied().collect(),
            "only the old instances served: {during:?}"
        );
        let st = status(dir.path());
        assert_eq!(pids(&st, "web"), old, "{st}");
        assert_eq!(app_status(&st, "web")["last_reload"]["result"], "failed");
    }
}

#[test]
fn requests_during_a_reload_fold_into_exactly_one_more() {
    let port = free_port();
    let dir = http_dir(port, "instances: 2");
    let h = Hotrun::start_with(
        Command::new(HOTRUN)
            .current_dir(dir.path())
            .env("READY_DELAY", "400"),
    );
    wait_online(dir.path());
    for _ in 0..3 {
        let out = hotrun_cmd(dir.path(), &["reload", "--no-wait"]);
        assert!(out.status.success());
    }
    wait_until("two reloads are done", || {
        let st = status(dir.path());
        let web = app_status(&st, "web");
        web["reloads"] == 2 && web["reloading"] == false
    });
    assert_eq!(h.count("rolling reload ("), 2, "{}", h.output());
    assert_eq!(h.count("one more will follow"), 2, "{}", h.output());
}

#[test]
fn a_python_app_gets_its_socket_by_listen_fds_and_is_ready_by_sd_notify() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "module.exports = {{ apps: [{{ name: 'py', script: '{}', instances: 2,
           wait_ready: true, listen: ['127.0.0.1:{port}'] }}] }};\n",
        app("notify_app.py")
    );
    std::fs::write(dir.path().join("ecosystem.config.js"), config).unwrap();
    let _h = Hotrun::start(dir.path(), &[]);
    let st = wait_online(dir.path());
    for inst in app_status(&st, "py")["instances"].as_array().unwrap() {
        assert_eq!(inst["ready_by"], "notify", "{st}");
    }
    let body = get(port).expect("the python app answers");
    assert!(body.contains("listen_pid_ok=True"), "{body}");
    assert!(body.contains(&format!("names=127.0.0.1:{port}")), "{body}");

    let load = Load::start(port, false);
    wait_until("the load is flowing", || load.completed() > 20);
    let stats = reload_under(dir.path(), load);
    assert!(
        stats.pids.len() >= 3,
        "old and new instances answered: {:?}",
        stats.pids
    );
}

#[test]
fn a_single_fork_mode_instance_reloads_without_a_failed_request() {
    let port = free_port();
    let dir = http_dir(port, "exec_mode: 'fork', instances: 1");
    let _h = Hotrun::start(dir.path(), &[]);
    let mut before = pids(&wait_online(dir.path()), "web");
    let fresh = Load::start(port, false);
    let kept = Load::start(port, true);
    wait_until("the load is flowing", || {
        fresh.completed() > 20 && kept.completed() > 20
    });
    for _ in 0..3 {
        assert!(reload(dir.path()).status.success());
        let after = pids(&status(dir.path()), "web");
        assert_ne!(before, after);
        before = after;
    }
    let (fresh, kept) = (fresh.finish(), kept.finish());
    assert_eq!(fresh.failed, 0, "failures: {:?}", fresh.errors);
    assert_eq!(kept.failed, 0, "failures: {:?}", kept.errors);
}

#[test]
fn a_launcher_whose_server_is_a_grandchild_still_shares_the_port_and_reports_ready() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "module.exports = {{ apps: [{{ name: 'launched', script: '{}', instances: 2,
           wait_ready: true, port: {port} }}] }};\n",
        app("launcher.js")
    );
    std::fs::write(dir.path().join("ecosystem.config.js"), config).unwrap();
    let _h = Hotrun::start(dir.path(), &[]);
    let st = wait_online(dir.path());
    for inst in app_status(&st, "launched")["instances"].as_array().unwrap() {
        assert_eq!(inst["ready_by"], "message", "{st}");
    }
    // Both grandchildren accept on the one socket.
    let load = Load::start(port, false);
    wait_until("both servers answered", || load.completed() > 200);
    let stats = reload_under(dir.path(), load);
    assert!(
        stats.pids.len() >= 4,
        "two servers, then two new ones: {:?}",
        stats.pids
    );
}

#[test]
fn hotrun_check_passes_and_fails() {
    let port = free_port();
    let good = http_dir(port, "instances: 2");
    let out = hotrun_cmd(good.path(), &["check", "--reloads", "2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("hotrun check: ok"), "{stdout}");
    assert!(
        stdout.contains("web: every instance ready after"),
        "{stdout}"
    );
    assert!(stdout.contains("rolling reload 2:"), "{stdout}");

    let bad = http_dir(free_port(), "instances: 2, listen_timeout: 1000");
    std::fs::write(bad.path().join("mode.txt"), "hang").unwrap();
    let out = hotrun_cmd(bad.path(), &["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "hotrun check: FAILED: web: an instance is not ready: no ready message after 1000 ms"
        ),
        "{stdout}"
    );
}

#[test]
fn status_json_and_the_control_socket_are_private() {
    let port = free_port();
    let dir = http_dir(port, "instances: 2");
    let runtime = tempfile::tempdir().unwrap();
    let _h = Hotrun::start_with(
        Command::new(HOTRUN)
            .current_dir(dir.path())
            .env("HOTRUN_RUNTIME_DIR", runtime.path().join("rt")),
    );
    wait_until("the control socket exists", || {
        std::fs::read_dir(runtime.path().join("rt"))
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    });
    use std::os::unix::fs::PermissionsExt;
    let folder = std::fs::read_dir(runtime.path().join("rt"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&runtime.path().join("rt")), 0o700);
    assert_eq!(mode(&folder), 0o700);
    let socket = folder.join("control.sock");
    assert_eq!(mode(&socket), 0o600);

    let client = |args: &[&str]| {
        Command::new(HOTRUN)
            .args(args)
            .current_dir(dir.path())
            .env("HOTRUN_RUNTIME_DIR", runtime.path().join("rt"))
            .output()
            .unwrap()
    };
    wait_until("online", || {
        let out = client(&["status", "--json"]);
        let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        st["apps"][0]["instances"]
            .as_array()
            .is_some_and(|i| i.iter().all(|i| i["state"] == "online"))
    });
    let out = client(&["status", "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let web = &st["apps"][0];
    assert_eq!(web["name"], "web");
    assert_eq!(web["reloads"], 0);
    assert!(web["last_reload"].is_null());
    for (i, inst) in web["instances"].as_array().unwrap().iter().enumerate() {
        assert_eq!(inst["id"], i);
        assert!(inst["pid"].as_i64().unwrap() > 1);
        assert_eq!(inst["state"], "online");
        assert_eq!(inst["ready_by"], "message");
        assert_eq!(inst["restarts"], 0);
        assert_eq!(inst["reloads"], 0);
        assert!(inst["memory_bytes"].as_u64().unwrap() > 1_000_000);
        assert!(inst["uptime_ms"].as_u64().is_some());
    }
    assert!(client(&["reload"]).status.success());
    let out = client(&["status", "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["apps"][0]["reloads"], 1);
    for inst in st["apps"][0]["instances"].as_array().unwrap() {
        assert_eq!(inst["reloads"], 1, "each instance replaced once: {st}");
        assert_eq!(inst["restarts"], 0, "a reload is not a restart: {st}");
    }
    assert_eq!(st["apps"][0]["last_reload"]["trigger"], "hotrun reload");
    assert_eq!(st["apps"][0]["last_reload"]["result"], "ok");

    let table = String::from_utf8_lossy(&client(&["status"]).stdout).to_string();
    assert!(table.starts_with("app  id  pid"), "{table}");
    assert!(table.contains("web  1"), "{table}");
}

#[test]
fn talking_to_a_hotrun_that_is_not_running_says_so() {
    let dir = http_dir(free_port(), "");
    let out = hotrun_cmd(dir.path(), &["status"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hotrun: hotrun is not running for"), "{err}");
}

#[test]
fn a_port_held_by_another_process_is_a_clear_error() {
    let holder = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(app("http.js"), dir.path().join("server.js")).unwrap();
    let config = format!(
        "module.exports = {{ apps: [{{ name: 'web', script: 'server.js', port: {port} }}] }};\n"
    );
    std::fs::write(dir.path().join("ecosystem.config.js"), config).unwrap();
    let out = hotrun_cmd(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "web: cannot listen on {port}: the port is already in use by another process"
        )),
        "{err}"
    );
}

#[test]
fn npm_start_in_cluster_mode_shares_the_port_and_reloads_without_a_failed_request() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(app("http.js"), dir.path().join("server.js")).unwrap();
    std::fs::write(
        dir.path().join("package.json"),
        r#"{"name": "app", "private": true, "scripts": {"start": "node server.js"}}"#,
    )
    .unwrap();
    let config = format!(
        "module.exports = {{ apps: [{{ name: 'next-like', script: 'npm', args: 'start',
           exec_mode: 'cluster', instances: 2, wait_ready: true, port: {port} }}] }};\n"
    );
    std::fs::write(dir.path().join("ecosystem.config.js"), config).unwrap();
    let _h = Hotrun::start_with(
        Command::new(HOTRUN)
            .current_dir(dir.path())
            .env("npm_config_update_notifier", "false"),
    );
    let st = wait_online(dir.path());
    for inst in app_status(&st, "next-like")["instances"]
        .as_array()
        .unwrap()
    {
        assert_eq!(inst["ready_by"], "message", "{st}");
    }
    let load = Load::start(port, false);
    wait_until("the servers answered", || load.completed() > 100);
    let stats = reload_under(dir.path(), load);
    assert!(
        stats.pids.len() >= 4,
        "two servers, then two new ones: {:?}",
        stats.pids
    );
}
