//! Reload triggers with real files and processes: watching (debounce, ignores, new
//! folders, folding, polling, `hotrun watch`, the watch count on a huge node_modules)
//! and memory over `max_memory_restart`.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http::{free_port, Load};
use common::*;

/// An app in a temp folder that watches it; `extra` is added to the app's keys.
fn watched_app(extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(app("http.js"), dir.path().join("server.js")).unwrap();
    let port = free_port();
    let config = format!(
        "module.exports = {{ apps: [{{ name: 'web', script: 'server.js', instances: 2,
           wait_ready: true, watch: true, env: {{ HTTP_PORT: {port} }}, {extra} }}] }};\n"
    );
    std::fs::write(dir.path().join("ecosystem.config.js"), config).unwrap();
    dir
}

fn reloads(dir: &Path) -> i64 {
    app_status(&status(dir), "web")["reloads"].as_i64().unwrap()
}

/// `n` reloads done, and no more through a quiet second.
fn wait_reloads(dir: &Path, n: i64) {
    wait_reloads_held(dir, "web", n);
}

#[test]
fn touching_a_watched_file_reloads() {
    let dir = watched_app("");
    let h = Hotrun::start(dir.path(), &[]);
    h.wait_for("watching for changes");
    let before = pids(&wait_online(dir.path()), "web");
    let f = std::fs::File::options()
        .append(true)
        .open(dir.path().join("server.js"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
    wait_reloads(dir.path(), 1);
    let after = pids(&status(dir.path()), "web");
    assert!(after.iter().all(|p| !before.contains(p)));
    assert!(
        h.output()
            .contains("web: 1 file changed (server.js) -> reload"),
        "{}",
        h.output()
    );
    assert_eq!(
        app_status(&status(dir.path()), "web")["last_reload"]["trigger"],
        "watch"
    );
}

#[test]
fn a_burst_of_1000_files_is_one_reload_in_a_watched_folder_and_in_a_new_one() {
    // A window of 500 ms: the test's own writes may pause 100 ms on a loaded machine.
    let dir = watched_app("watch_delay: 500");
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let h = Hotrun::start(dir.path(), &[]);
    h.wait_for("watching for changes");
    wait_online(dir.path());
    for i in 0..1000 {
        std::fs::write(src.join(format!("f{i}.js")), format!("// {i}\n")).unwrap();
    }
    h.wait_for("reload done");
    wait_reloads(dir.path(), 1);
    assert_eq!(h.count("-> reload"), 1, "{}", h.output());
    // Every file counted once, by name.
    assert!(
        h.output().contains("web: 1000 files changed (src/f"),
        "{}",
        h.output()
    );
    // A new folder with 1,000 files written before its watch could exist: the folder
    // counts as the change, and once watched, a change inside it reloads again.
    let lib = dir.path().join("lib");
    std::fs::create_dir(&lib).unwrap();
    for i in 0..1000 {
        std::fs::write(lib.join(format!("g{i}.js")), format!("// {i}\n")).unwrap();
    }
    h.wait_for_n("reload done", 2);
    wait_reloads(dir.path(), 2);
    assert_eq!(h.count("-> reload"), 2, "{}", h.output());
    std::fs::write(lib.join("g1.js"), "// again\n").unwrap();
    h.wait_for_n("reload done", 3);
    wait_reloads(dir.path(), 3);
    assert_eq!(h.count("-> reload"), 3, "{}", h.output());
    assert!(
        h.output().contains("(lib/g1.js) -> reload"),
        "{}",
        h.output()
    ); // Nothing more follows.
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(reloads(dir.path()), 3, "{}", h.output());
}

#[test]
fn ignored_paths_do_not_reload_and_a_new_subfolder_does() {
    let dir = watched_app("ignore_watch: ['*.log', 'tmp']");
    for d in ["node_modules/pkg", ".git", "tmp"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    let h = Hotrun::start(dir.path(), &[]);
    h.wait_for("watching for changes");
    wait_online(dir.path());
    // Ignored: node_modules, .git, an ignore_watch glob, an ignored folder.
    for f in [
        "node_modules/pkg/index.js",
        ".git/index.lock",
        "app.log",
        "tmp/cache.bin",
        "server.js.swp",
    ] {
        std::fs::write(dir.path().join(f), "x").unwrap();
    }
    // Then a real change: the only path of the one reload.
    std::fs::write(dir.path().join("trigger.js"), "x").unwrap();
    wait_reloads(dir.path(), 1);
    assert!(
        h.output()
            .contains("web: 1 file changed (trigger.js) -> reload"),
        "{}",
        h.output()
    );

    // A file written into folders made at once, before any watch could be placed there.
    let deep = dir.path().join("lib/a/b");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("x.js"), "x").unwrap();
    wait_reloads(dir.path(), 2);
    assert_eq!(h.count("-> reload"), 2, "{}", h.output());
    // The new folders are watched now: a change deep inside reloads again.
    std::fs::write(deep.join("y.js"), "y").unwrap();
    wait_reloads(dir.path(), 3);
    assert!(
        h.output()
            .contains("web: 1 file changed (lib/a/b/y.js) -> reload"),
        "{}",
        h.output()
    );
}

#[test]
fn a_change_during_a_reload_gives_exactly_one_more() {
    let dir = watched_app("");
    let h = Hotrun::start_with(
        Command::new(HOTRUN)
            .current_dir(dir.path())
            .env("READY_DELAY", "500"),
    );
    h.wait_for("watching for changes");
    wait_online(dir.path());
    std::fs::write(dir.path().join("a.js"), "1").unwrap();
    h.wait_for("web: rolling reload (watch)");
    std::fs::write(dir.path().join("b.js"), "2").unwrap();
    h.wait_for("-> reload");
    h.wait_for_n("-> reload", 2);
    h.wait_for("one more will follow");
    wait_reloads(dir.path(), 2);
    std::fs::write(dir.path().join("c.js"), "3").unwrap();
    wait_reloads(dir.path(), 3);
    assert_eq!(h.count("rolling reload (watch)"), 3, "{}", h.output());
}

#[test]
fn polling_mode_sees_changes() {
    let dir = watched_app("watch_options: { usePolling: true, interval: 100 }");
    let h = Hotrun::start(dir.path(), &[]);
    h.wait_for("watching for changes");
    wait_online(dir.path());
    std::fs::write(dir.path().join("polled.js"), "x").unwrap();
    wait_reloads(dir.path(), 1);
    // The poll may also see the folder's own time change (named ".").
    let line = h.wait_for("-> reload");
    assert!(line.contains("polled.js"), "{}", h.output());
    assert!(!line.contains("(, "), "an empty path is named: {line}");
}

#[test]
fn hotrun_watch_forces_watching_and_rs_reloads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(app("http.js"), dir.path().join("server.js")).unwrap();
    let config = format!(
        "module.exports = {{ apps: [{{ name: 'web', script: 'server.js', instances: 3,
           wait_ready: true, env: {{ HTTP_PORT: {} }} }}] }};\n",
        free_port()
    );
    std::fs::write(dir.path().join("ecosystem.config.js"), config).unwrap();
    let mut cmd = Command::new(HOTRUN);
    cmd.args(["watch", "--instances", "2"])
        .current_dir(dir.path());
    let mut h = Hotrun::start_with_stdin(cmd.stdin(Stdio::piped()));
    h.wait_for("watching for changes");
    let st = wait_online(dir.path());
    assert_eq!(
        pids(&st, "web").len(),
        2,
        "--instances 2 overrides the file's 3"
    );
    std::fs::write(dir.path().join("x.js"), "x").unwrap();
    wait_reloads(dir.path(), 1);
    use std::io::Write;
    let stdin = h.child.stdin.as_mut().unwrap();
    stdin.write_all(b"rs\n").unwrap();
    stdin.flush().unwrap();
    wait_reloads(dir.path(), 2);
    assert_eq!(
        app_status(&status(dir.path()), "web")["last_reload"]["trigger"],
        "rs"
    );
}

#[test]
fn a_huge_node_modules_costs_no_watches() {
    let dir = watched_app("");
    let nm = dir.path().join("node_modules");
    for i in 0..200 {
        for j in 0..100 {
            std::fs::create_dir_all(nm.join(format!("p{i}/d{j}"))).unwrap();
        }
    }
    let kept = ["src", "src/pages", "src/lib", "public"];
    for d in kept {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    let h = Hotrun::start(dir.path(), &[]);
    h.wait_for("watching for changes");
    // The root and its 4 kept folders, and the root's parent (for the root's return);
    // not one of the 20,200 under node_modules.
    let watches = inotify_watches(h.pid());
    assert_eq!(watches, 6, "{watches} inotify watches");
}

/// VmRSS of a live process, in MB (0 once it is gone).
fn rss_mb(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

#[test]
fn a_fast_leak_is_restarted_at_1_5_times_its_limit_while_it_backs_off() {
    // 100 MB/s against max_memory_restart 100M: replaced once, over again at once (the
    // back-off), then restarted each time it passes 150 MB instead of growing to 700 MB.
    let dir = config_dir(&format!(
        "module.exports = {{ apps: [{{ name: 'leak', script: '{}', wait_ready: true,
           max_memory_restart: '100M' }}] }};\n",
        app("leak.js")
    ));
    let h = Hotrun::start_with(
        Command::new(HOTRUN)
            .args(["--memory-interval", "200"])
            .current_dir(dir.path()),
    );
    let mut most = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while h.count("over 1.5 x max_memory_restart") < 2 {
        assert!(Instant::now() < deadline, "{}", h.output());
        let out = h.output();
        for line in out.lines().filter(|l| l.contains("leak pid=")) {
            most = most.max(rss_mb(field(line, "pid")));
        }
        // 150 MB, plus what it leaks between two samples and before it exits.
        assert!(most < 250, "an instance reached {most} MB:\n{out}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = h.output();
    assert!(out.contains("over max_memory_restart again"), "{out}");
    assert!(out.contains("-> restarting it now"), "{out}");
    eprintln!("the most an instance held: {most} MB");
}

#[test]
fn an_instance_over_its_memory_limit_is_replaced_alone_without_a_failed_request() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(app("http.js"), dir.path().join("server.js")).unwrap();
    let config = format!(
        "module.exports = {{ apps: [{{ name: 'web', script: 'server.js', instances: 3,
           wait_ready: true, max_memory_restart: '150M', env: {{ HTTP_PORT: {port} }},
           build: 'echo built >> builds.log' }}] }};\n"
    );
    std::fs::write(dir.path().join("ecosystem.config.js"), config).unwrap();
    let h = Hotrun::start_with(
        Command::new(HOTRUN)
            .args(["--memory-interval", "200"])
            .current_dir(dir.path())
            .env("BLOAT_MB", "200")
            .env("BLOAT_INSTANCE", "1")
            .env("BLOAT_DELAY", "1500"),
    );
    let before = pids(&wait_online(dir.path()), "web");
    let load = Load::start(port, false);
    let line = h.wait_for("holding 200 MB");
    assert!(
        load.completed() > 0,
        "the load runs before the instance grows"
    );
    let bloated: i64 = field(&line, "pid").into();
    assert_eq!(before[1], bloated);
    h.wait_for("web|1 uses");
    wait_until("slot 1 is replaced", || {
        let st = status(dir.path());
        let web = app_status(&st, "web");
        web["reloads"] == 1 && web["reloading"] == false
    });
    let st = status(dir.path());
    let after = pids(&st, "web");
    assert_eq!(
        (after[0], after[2]),
        (before[0], before[2]),
        "the other instances keep their pids"
    );
    assert_ne!(after[1], bloated);
    assert_eq!(app_status(&st, "web")["last_reload"]["trigger"], "memory");
    let stats = load.finish();
    assert_eq!(stats.failed, 0, "failures: {:?}", stats.errors);
    let said = h.output();
    assert!(
        said.contains("over max_memory_restart 150.0 MB -> replacing it"),
        "{said}"
    );
    // The code did not change: the build ran before the first start only.
    let builds = std::fs::read_to_string(dir.path().join("builds.log")).unwrap();
    assert_eq!(builds.lines().count(), 1, "builds: {builds:?}");
}
