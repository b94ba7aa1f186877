//! Faults hotrun survives, each injected for real: instances that ignore SIGINT or leave
//! children behind, hotrun itself SIGKILLed and started again, a crash loop beside a
//! healthy app, floods of output, log files that cannot be written, many reloads, many
//! clients at once, a bad control client. The slowest (100 MB flood, 200 reloads) run with
//! `cargo test -- --ignored`.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::http::{free_port, get, Load};
use common::procfs::{open_fds, rss_kb};
use common::*;
use nix::sys::signal::Signal;

fn js(apps: &str) -> tempfile::TempDir {
    config_dir(&format!("module.exports = {{ apps: [ {apps} ] }};\n"))
}

fn http_app(port: u16, extra: &str) -> String {
    format!(
        "{{ name: 'web', script: '{}', wait_ready: true, env: {{ HTTP_PORT: {port} }}, {extra} }}",
        app("http.js")
    )
}

#[test]
fn an_instance_that_ignores_sigint_is_killed_with_its_children_during_a_reload() {
    let dir = js(&format!(
        "{{ name: 'stubborn', script: '{}', kill_timeout: 500 }}",
        app("stubborn.js")
    ));
    let h = Hotrun::start(dir.path(), &[]);
    let line = h.wait_for("stubborn up");
    let (pid, child) = (field(&line, "pid"), field(&line, "child"));
    wait_online(dir.path());
    let out = hotrun_cmd(dir.path(), &["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    h.wait_for("still running 500 ms after SIGINT; sending SIGKILL to its process group");
    wait_until("the old instance and its child are gone", || {
        !alive(pid) && !alive(child)
    });
}

#[test]
fn children_left_behind_by_a_crashed_instance_do_not_survive() {
    let dir = js(&format!(
        "{{ name: 'leaver', script: '{}', max_restarts: 100, restart_delay: 200 }}",
        app("leaver.js")
    ));
    let h = Hotrun::start(dir.path(), &[]);
    let first = h.wait_for("leaver pid=");
    let child = field(&first, "child");
    h.wait_for_n("leaver pid=", 2);
    wait_until("the first run's child is gone", || !alive(child));
}

/// SIGKILLs the pids when dropped: a failing test leaves no process behind.
struct KillOnDrop(Vec<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pid in &self.0 {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// The children's pids of `spawner pid=P children=a,b,c` lines.
fn spawned_children(lines: &[String]) -> Vec<i32> {
    lines
        .iter()
        .flat_map(|l| l.split("children=").nth(1).unwrap().split(','))
        .map(|p| p.trim().parse().unwrap())
        .collect()
}

#[test]
fn descendants_that_leave_the_group_go_with_their_instance_at_reload_and_at_stop() {
    // 2 instances, each with 10 children that ignore SIGINT and SIGTERM, 5 of them
    // `detached: true` (out of the instance's process group).
    let dir = js(&format!(
        "{{ name: 'spawner', script: '{}', instances: 2, wait_ready: true, kill_timeout: 800 }}",
        app("spawner.js")
    ));
    let mut h = Hotrun::start(dir.path(), &[]);
    let first = spawned_children(&h.wait_for_n("spawner pid=", 2));
    let _first = KillOnDrop(first.clone());
    assert_eq!(first.len(), 20);
    assert!(first.iter().all(|&p| alive(p)));

    let out = hotrun_cmd(dir.path(), &["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left: Vec<i32> = first.iter().copied().filter(|&p| alive(p)).collect();
    assert!(
        left.is_empty(),
        "the replaced instances left {left:?} running:\n{}",
        h.output()
    );

    let lines = h.wait_for_n("spawner pid=", 4);
    let second = spawned_children(&lines[2..]);
    let _second = KillOnDrop(second.clone());
    assert!(second.iter().all(|&p| alive(p)));
    h.signal(Signal::SIGTERM);
    assert!(h.wait_exit().success(), "{}", h.output());
    let left: Vec<i32> = second.iter().copied().filter(|&p| alive(p)).collect();
    assert!(
        left.is_empty(),
        "stopping left {left:?} running:\n{}",
        h.output()
    );
}

#[test]
fn descendants_that_leave_the_group_die_with_a_sigkilled_hotrun() {
    let dir = js(&format!(
        "{{ name: 'spawner', script: '{}', instances: 2, wait_ready: true }}",
        app("spawner.js")
    ));
    let mut h = Hotrun::start(dir.path(), &[]);
    let children = spawned_children(&h.wait_for_n("spawner pid=", 2));
    let _children = KillOnDrop(children.clone());
    assert!(children.iter().all(|&p| alive(p)));
    h.signal(Signal::SIGKILL);
    h.wait_exit();
    // The guard process kills them once hotrun is gone.
    wait_until("every child, detached ones too, is gone", || {
        children.iter().all(|&p| !alive(p))
    });
}

#[test]
fn after_hotrun_is_sigkilled_a_new_one_starts_cleanly_on_the_same_file() {
    let port = free_port();
    let dir = js(&http_app(port, "instances: 2"));
    let mut h = Hotrun::start(dir.path(), &[]);
    let old = pids(&wait_online(dir.path()), "web");
    h.signal(Signal::SIGKILL);
    h.wait_exit();
    wait_until("every instance is gone", || {
        old.iter().all(|&p| !alive(p as i32))
    });

    // The control socket file is left behind; the port is free again.
    let _h2 = Hotrun::start(dir.path(), &[]);
    let new = pids(&wait_online(dir.path()), "web");
    assert!(new.iter().all(|p| !old.contains(p)));
    assert!(get(port).unwrap().contains("instance"));
}

#[test]
fn a_crash_loop_in_one_app_leaves_the_other_apps_pids_alone() {
    let port = free_port();
    let dir = js(&format!(
        "{}, {{ name: 'crashy', script: '{}', max_restarts: 5, min_uptime: 1000 }}",
        http_app(port, "instances: 2"),
        app("crash.js")
    ));
    let h = Hotrun::start(dir.path(), &[]);
    let st = wait_until_web_online(dir.path());
    let before = pids(&st, "web");
    let load = Load::start(port, false);
    h.wait_for("crashy errored");
    let stats = load.finish();
    assert_eq!(stats.failed, 0, "{:?}", stats.errors);
    assert_eq!(pids(&status(dir.path()), "web"), before);
}

fn wait_until_web_online(dir: &Path) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    wait_until("web is online", || {
        let out = hotrun_cmd(dir, &["status", "--json"]);
        if !out.status.success() {
            return false;
        }
        last = serde_json::from_slice(&out.stdout).unwrap();
        app_status(&last, "web")["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["state"] == "online")
    });
    last
}

/// Floods `lines` lines through hotrun into an out_file beside a ticking app, and checks
/// that every line arrived whole and in order, the ticker kept printing, and hotrun's
/// memory stayed bounded.
fn flood(lines: usize, width: usize) {
    let logs = tempfile::tempdir().unwrap();
    let out_file = logs.path().join("flood.log");
    let dir = js(&format!(
        "{{ name: 'flood', script: '{}', out_file: '{}' }},
         {{ name: 'ticker', script: '{}' }}",
        app("flood.js"),
        out_file.display(),
        app("ticker.js")
    ));
    let mut cmd = Command::new(HOTRUN);
    cmd.current_dir(dir.path())
        .env("FLOOD_LINES", lines.to_string())
        .env("FLOOD_WIDTH", width.to_string());
    // hotrun's stdout goes to /dev/null: hotrun reads the flood and writes it out; the
    // test only reads hotrun's stderr.
    let h = Hotrun::start_quiet(&mut cmd);
    // Look at the file's last bytes only: it grows to 100 MB.
    let ends_done = || {
        use std::io::{Seek, SeekFrom};
        let Ok(mut f) = std::fs::File::open(&out_file) else {
            return false;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let mut tail = Vec::new();
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(64)));
        let _ = f.read_to_end(&mut tail);
        tail.ends_with(b"flood done\n")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while !ends_done() {
        assert!(
            std::time::Instant::now() < deadline,
            "the flood did not reach the file in 300 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rss = rss_kb(h.pid());
    let text = std::fs::read_to_string(&out_file).unwrap();
    let mut n = 0;
    for line in text.lines() {
        if line == "flood done" {
            break;
        }
        let expect = format!("line {:09} ", n);
        assert!(
            line.starts_with(&expect),
            "line {n} torn or lost: {:?}",
            &line[..line.len().min(40)]
        );
        assert_eq!(
            line.len(),
            width.max(20) - 5,
            "line {n} has its full length"
        );
        n += 1;
    }
    assert_eq!(n, lines, "every line arrived");
    assert!(rss < 40 * 1024, "hotrun's RSS stayed bounded: {rss} kB");
    eprintln!("flood of {lines} lines x {width} bytes: hotrun RSS {rss} kB");
}

#[test]
fn a_flood_of_output_loses_no_line_and_keeps_memory_bounded() {
    flood(100_000, 100); // 10 MB
}

#[test]
#[ignore = "slow: 100 MB through hotrun; run with --ignored"]
fn a_100_mb_flood_loses_no_line_and_keeps_memory_bounded() {
    flood(1_000_000, 100);
}

#[test]
fn other_apps_output_keeps_flowing_during_a_flood() {
    let dir = js(&format!(
        "{{ name: 'flood', script: '{}' }}, {{ name: 'ticker', script: '{}' }}",
        app("flood.js"),
        app("ticker.js")
    ));
    let h = Hotrun::start_with(
        Command::new(HOTRUN)
            .current_dir(dir.path())
            .env("FLOOD_LINES", "2000000"),
    );
    h.wait_for("tick 0");
    // While the flood runs (2 million lines, seconds of work), the ticker's lines keep
    // coming: ten of them before the flood is done.
    h.wait_for("tick 10");
    assert_eq!(
        h.count("flood done"),
        0,
        "the ticker printed while the flood ran"
    );
}

#[test]
fn a_log_file_that_cannot_be_written_is_said_once_and_the_app_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("not-a-folder"), "").unwrap();
    let bad = dir.path().join("not-a-folder/out.log");
    let config = format!(
        "module.exports = {{ apps: [
            {{ name: 'full', script: '{}', out_file: '/dev/full' }},
            {{ name: 'nowhere', script: '{}', out_file: '{}' }} ] }};\n",
        app("ticker.js"),
        app("ticker.js"),
        bad.display()
    );
    std::fs::write(dir.path().join("ecosystem.config.js"), config).unwrap();
    let h = Hotrun::start(dir.path(), &[]);
    // Both apps keep printing.
    h.wait_for_n(" | tick 5", 2);
    assert_eq!(
        h.count("cannot write full's log file /dev/full"),
        1,
        "{}",
        h.output()
    );
    assert_eq!(
        h.count("cannot open nowhere's log file"),
        1,
        "{}",
        h.output()
    );
    let st = status(dir.path());
    for app in ["full", "nowhere"] {
        assert_eq!(app_status(&st, app)["instances"][0]["restarts"], 0);
    }
}

/// `n` rolling reloads under load: none fails, and hotrun's fds and RSS after them are
/// those after the first 10.
/// hotrun's open fds once replaced instances have finished draining (`hotrun reload`
/// returns when the new ones serve; an old one may still hold its pipes for a moment).
fn settled_fds(pid: i32) -> usize {
    let mut last = open_fds(pid);
    for _ in 0..40 {
        std::thread::sleep(std::time::Duration::from_millis(250));
        let now = open_fds(pid);
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

fn soak(n: usize) {
    let port = free_port();
    let dir = js(&http_app(port, "instances: 2"));
    let h = Hotrun::start(dir.path(), &[]);
    wait_online(dir.path());
    let load = Load::start(port, false);
    let mut after_ten = (0, 0);
    for i in 1..=n {
        let out = hotrun_cmd(dir.path(), &["reload"]);
        assert!(
            out.status.success(),
            "reload {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if i == 10 {
            after_ten = (settled_fds(h.pid()), rss_kb(h.pid()));
        }
    }
    let stats = load.finish();
    assert_eq!(stats.failed, 0, "{:?}", stats.errors);
    let (fds, rss) = (settled_fds(h.pid()), rss_kb(h.pid()));
    eprintln!(
        "after 10 reloads: {} fds, {} kB; after {n}: {fds} fds, {rss} kB",
        after_ten.0, after_ten.1
    );
    assert_eq!(fds, after_ten.0, "no fd leak");
    assert!(
        rss <= after_ten.1 + 1024,
        "no memory growth: {} -> {rss} kB",
        after_ten.1
    );
}

#[test]
fn thirty_reloads_under_load_leak_no_fd() {
    soak(30);
}

#[test]
#[ignore = "slow: 200 reloads; run with --ignored"]
fn two_hundred_reloads_under_load_leak_nothing() {
    soak(200);
}

#[test]
fn ten_clients_reloading_at_once_are_all_answered_and_folded() {
    let port = free_port();
    let dir = js(&http_app(port, "instances: 2"));
    let _h = Hotrun::start_with(
        Command::new(HOTRUN)
            .current_dir(dir.path())
            .env("READY_DELAY", "300"),
    );
    wait_online(dir.path());
    let clients: Vec<_> = (0..10)
        .map(|_| {
            let d = dir.path().to_path_buf();
            std::thread::spawn(move || hotrun_cmd(&d, &["reload"]))
        })
        .collect();
    for c in clients {
        let out = c.join().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let reloads = app_status(&status(dir.path()), "web")["reloads"]
        .as_i64()
        .unwrap();
    assert!(
        (1..=2).contains(&reloads),
        "10 requests folded into {reloads} reloads"
    );
}

/// The control socket of the hotrun running in `dir`.
fn control_socket(runtime: &Path) -> std::path::PathBuf {
    let folder = std::fs::read_dir(runtime)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    folder.join("control.sock")
}

#[test]
fn garbage_on_the_control_socket_gets_an_error_and_harms_nothing() {
    let runtime = tempfile::tempdir().unwrap();
    let dir = js(&format!(
        "{{ name: 'tick', script: '{}' }}",
        app("ticker.js")
    ));
    let _h = Hotrun::start_with(
        Command::new(HOTRUN)
            .current_dir(dir.path())
            .env("HOTRUN_RUNTIME_DIR", runtime.path()),
    );
    wait_until("the socket exists", || {
        std::fs::read_dir(runtime.path())
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
            && control_socket(runtime.path()).exists()
    });
    let socket = control_socket(runtime.path());
    let ask = |bytes: &[u8], shut: bool| -> String {
        let mut s = UnixStream::connect(&socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let _ = s.write_all(bytes);
        if shut {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
    };
    assert!(ask(b"garbage\n", false).contains("not a request"));
    assert!(ask(b"{\"cmd\":\"explode\"}\n", false).contains("not a request"));
    assert!(
        ask(b"{\"cmd\":\"sta", true).contains("not a request"),
        "a half line"
    );
    let huge = vec![b'x'; 200 * 1024];
    assert!(ask(&huge, false).contains("longer than"));
    // A client that connects and never writes does not block anyone else.
    let _idle = UnixStream::connect(&socket).unwrap();
    let client = |args: &[&str]| {
        Command::new(HOTRUN)
            .args(args)
            .current_dir(dir.path())
            .env("HOTRUN_RUNTIME_DIR", runtime.path())
            .output()
            .unwrap()
    };
    let out = client(&["status", "--json"]);
    assert!(out.status.success());
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        st["apps"][0]["instances"][0]["pid"].as_i64().is_some(),
        "{st}"
    );
}
