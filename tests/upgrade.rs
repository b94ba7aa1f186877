//! `hotrun upgrade`: the running binary execs into itself (the test builds nothing new)
//! under load, and every instance, socket and pipe is taken over: no request fails, the
//! pids stay, every output line reaches the log file once and whole, a reload and a stop
//! afterwards work. A state the new side refuses sends hotrun back to the old binary.
//! Twenty upgrades leak no fd and no memory.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::http::{free_port, get};
use common::node_load::{Clients, NodeLoad};
use common::procfs::{open_fds, rss_kb};
use common::*;

/// An app of 2 chatty instances (fixtures/apps/chatty.js) on `port`, its stdout and
/// stderr in one log file.
fn chatty_dir(port: u16) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("web.log");
    std::fs::write(
        dir.path().join("ecosystem.config.js"),
        format!(
            "module.exports = {{ apps: [{{ name: 'web', script: '{}', instances: 2,
               wait_ready: true, merge_logs: true, log_file: '{}', env: {{ HTTP_PORT: {port} }} }}] }};\n",
            app("chatty.js"),
            log.display()
        ),
    )
    .unwrap();
    dir
}

fn upgrade(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["upgrade"];
    all.extend_from_slice(args);
    hotrun_cmd(dir, &all)
}

/// Writes an executable shell script.
fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// hotrun's open fds once steady: the fewest of 10 looks 50 ms apart (a status request
/// of the test's own, a connection being accepted, come and go).
fn steady_fds(pid: i32) -> usize {
    (0..10)
        .map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            open_fds(pid)
        })
        .min()
        .unwrap()
}

/// Checks the log file: every line whole, and each instance's numbered lines one after
/// the other from its first to its last, none missing, none twice. Only the very last
/// stdout line of an instance may be cut: what it wrote as it exited (Node queues stdout
/// writes to a full pipe in memory and drops them at exit), which no reader can get.
/// Returns the lines per pid.
fn check_lines(log: &Path) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // (line number, pid, its number if the line is whole)
    let mut out: Vec<(usize, String, Option<u64>)> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let f: Vec<&str> = line.split(' ').collect();
        match f.as_slice() {
            ["chatty", pid, n, pad, "end"] if pad.len() == 200 => {
                let n = n.parse().unwrap_or_else(|_| panic!("line {i}: {line}"));
                out.push((i, pid.to_string(), Some(n)));
            }
            ["chatty-err", _, _, "end"] => {}
            ["chatty", pid, ..] => out.push((i, pid.to_string(), None)),
            _ => panic!("line {i} is torn: {line:?}"),
        }
    }
    let mut next: BTreeMap<String, u64> = BTreeMap::new();
    let mut count: BTreeMap<String, u64> = BTreeMap::new();
    for (k, (i, pid, n)) in out.iter().enumerate() {
        match n {
            Some(n) => {
                if let Some(want) = next.get(pid) {
                    assert_eq!(n, want, "line {i} of {pid}: lost or repeated lines");
                }
                next.insert(pid.clone(), n + 1);
                *count.entry(pid.clone()).or_default() += 1;
            }
            None => {
                let later = out[k + 1..].iter().any(|(_, p, _)| p == pid);
                assert!(
                    !later,
                    "line {i} of {pid} is torn and more of its lines follow: {:?}",
                    lines[i.saturating_sub(2)..(i + 3).min(lines.len())].to_vec()
                );
            }
        }
    }
    count
}

#[test]
fn the_same_binary_upgrades_into_itself_under_load_keeping_every_instance() {
    let port = free_port();
    let dir = chatty_dir(port);
    let h = Hotrun::start(dir.path(), &[]);
    let before = pids(&wait_online(dir.path()), "web");
    let online_at = std::time::Instant::now();
    for clients in [Clients::new(16), Clients::new(16).keep_alive()] {
        let load = NodeLoad::start(port, clients);
        for n in 0..3 {
            let out = upgrade(dir.path(), &[]);
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && said.contains("every instance kept"),
                "upgrade {n}: {said} {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let r = load.finish();
        assert!(
            r.failed == 0 && r.hung == 0 && r.ok > 200,
            "{clients:?}: {} failed, {} hung, {} ok: {:?} {:?}",
            r.failed,
            r.hung,
            r.ok,
            r.errors,
            r.samples
        );
        let served: Vec<i64> = r.pids.keys().map(|p| p.parse().unwrap()).collect();
        assert_eq!(served, before, "only the same two instances answered");
    }
    assert_eq!(
        h.pid() as u32,
        status(dir.path())["pid"].as_u64().unwrap() as u32
    );
    let st = status(dir.path());
    assert_eq!(pids(&st, "web"), before, "{st}");
    assert_eq!(st["upgrade"]["ok"], true, "{st}");
    assert_eq!(st["version"], env!("CARGO_PKG_VERSION"));
    let table = String::from_utf8_lossy(&hotrun_cmd(dir.path(), &["status"]).stdout).into_owned();
    assert!(
        table.contains(&format!(
            "hotrun {} (pid {}): upgraded from",
            env!("CARGO_PKG_VERSION"),
            h.pid()
        )),
        "{table}"
    );
    for inst in app_status(&st, "web")["instances"].as_array().unwrap() {
        assert_eq!(inst["restarts"], 0, "{st}");
        // Kept: at least the time since they were seen online (an upgrade that started
        // them again would show the time since the last upgrade).
        let up = inst["uptime_ms"].as_u64().unwrap() as u128;
        assert!(
            up + 100 >= online_at.elapsed().as_millis(),
            "uptime kept: {st}"
        );
    }
    // A reload afterwards replaces both; a stop ends everything.
    let out = hotrun_cmd(dir.path(), &["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = pids(&wait_online(dir.path()), "web");
    assert!(after.iter().all(|p| !before.contains(p)), "{after:?}");
    assert!(get(port).unwrap().starts_with("chatty "));
    let children_before_stop = children_of(h.pid());
    assert!(hotrun_cmd(dir.path(), &["stop"]).status.success());
    let mut h = h;
    assert!(h.wait_exit().success());
    // The guard goes once its pipe from hotrun is closed: a moment after hotrun.
    for (pid, _, cmd) in children_before_stop {
        wait_until(&format!("{pid} ({cmd}) is gone after hotrun"), || {
            !alive(pid)
        });
    }
    for pid in before.iter().chain(&after) {
        assert!(!alive(*pid as i32), "{pid} outlived hotrun");
    }
    // Every line the instances wrote is in the file once and whole, across 6 upgrades.
    let lines = check_lines(&dir.path().join("web.log"));
    for pid in &before {
        assert!(
            lines.get(&pid.to_string()).copied().unwrap_or(0) > 1000,
            "{pid} wrote: {lines:?}"
        );
    }
}

#[test]
fn a_state_the_new_side_refuses_sends_hotrun_back_to_the_old_binary() {
    let port = free_port();
    let dir = chatty_dir(port);
    let h = Hotrun::start(dir.path(), &[]);
    let before = pids(&wait_online(dir.path()), "web");
    let load = NodeLoad::start(port, Clients::new(16));
    let out = upgrade(dir.path(), &["--refuse-state"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("upgrade not done: its state was marked to be refused (--refuse-state)"),
        "{err}"
    );
    h.wait_for("going back to the hotrun that ran before");
    h.wait_for("the new binary refused the upgrade");
    let r = load.finish();
    assert_eq!((r.failed, r.hung), (0, 0), "{r:?}");
    let st = status(dir.path());
    assert_eq!(pids(&st, "web"), before, "{st}");
    assert_eq!(st["upgrade"]["ok"], false, "{st}");
    let table = String::from_utf8_lossy(&hotrun_cmd(dir.path(), &["status"]).stdout).into_owned();
    assert!(table.contains("upgrade refused at"), "{table}");
    // It serves on, and a real upgrade afterwards works.
    assert!(get(port).is_ok());
    assert!(upgrade(dir.path(), &[]).status.success());
    assert_eq!(pids(&status(dir.path()), "web"), before);
}

#[test]
fn an_upgrade_is_refused_when_the_file_changed_since_it_was_read_or_the_binary_is_not_hotrun() {
    let port = free_port();
    let dir = chatty_dir(port);
    let _h = Hotrun::start(dir.path(), &[]);
    let before = pids(&wait_online(dir.path()), "web");
    let out = upgrade(dir.path(), &["--binary", "/bin/true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("/bin/true --version printed"), "{err}");
    // A hotrun from before upgrades says its version but knows no state.
    let old = dir.path().join("hotrun-0.0.9");
    script(
        &old,
        "[ \"$1\" = --version ] && echo 'hotrun 0.0.9' && exit 0\nexit 2\n",
    );
    let out = upgrade(dir.path(), &["--binary", old.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("hotrun 0.0.9")
            && err.contains("cannot take over a running hotrun (it has no upgrade)"),
        "{err}"
    );
    let file = dir.path().join("ecosystem.config.js");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("instances: 2", "instances: 3")).unwrap();
    let out = upgrade(dir.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the ecosystem file changed since hotrun read it (web: instances 2 -> 3)")
            && err.contains("reload first"),
        "{err}"
    );
    assert_eq!(pids(&status(dir.path()), "web"), before);
}

#[test]
fn twenty_upgrades_leak_no_fd_and_no_memory() {
    let port = free_port();
    let dir = chatty_dir(port);
    let h = Hotrun::start(dir.path(), &[]);
    wait_online(dir.path());
    // One upgrade first: the counts after it are the steady ones.
    assert!(upgrade(dir.path(), &[]).status.success());
    let (fds, rss) = (steady_fds(h.pid()), rss_kb(h.pid()));
    for n in 0..20 {
        let out = upgrade(dir.path(), &[]);
        assert!(
            out.status.success(),
            "upgrade {n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (fds_after, rss_after) = (steady_fds(h.pid()), rss_kb(h.pid()));
    eprintln!("fds {fds} -> {fds_after}, RSS {rss} -> {rss_after} kB");
    assert_eq!(fds_after, fds, "fds after 20 upgrades");
    assert!(rss_after < rss + 2048, "RSS {rss} -> {rss_after} kB");
}

#[test]
fn sigusr2_upgrades_and_the_fallback_reaches_an_old_binary_whose_file_is_gone() {
    // hotrun runs from a copy of its binary, which is then deleted (as a package upgrade
    // removes the old file).
    let port = free_port();
    let dir = chatty_dir(port);
    let old = dir.path().join("hotrun-old");
    std::fs::copy(HOTRUN, &old).unwrap();
    let h = Hotrun::start_with(std::process::Command::new(&old).current_dir(dir.path()));
    let before = pids(&wait_online(dir.path()), "web");
    std::fs::remove_file(&old).unwrap();
    // The new binary refuses the state: back to the old one, through hotrun's descriptor
    // of it, since its file is gone.
    let out = upgrade(dir.path(), &["--binary", HOTRUN, "--refuse-state"]);
    assert_eq!(out.status.code(), Some(1));
    h.wait_for("the new binary refused the upgrade");
    assert_eq!(pids(&status(dir.path()), "web"), before);
    // SIGUSR2 upgrades to hotrun's own path: gone, so it is said and nothing changes...
    h.signal(nix::sys::signal::Signal::SIGUSR2);
    h.wait_for("upgrade not done:");
    // ...and once a binary is there again, SIGUSR2 upgrades to it.
    std::fs::copy(HOTRUN, &old).unwrap();
    h.signal(nix::sys::signal::Signal::SIGUSR2);
    // (`hotrun status` may meet the exec itself: a connection it cuts is asked again.)
    wait_until("hotrun upgraded on SIGUSR2", || {
        let out = hotrun_cmd(dir.path(), &["status", "--json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .is_ok_and(|st| st["upgrade"]["ok"] == true)
    });
    let st = status(dir.path());
    assert_eq!(pids(&st, "web"), before, "{st}");
    assert!(get(port).is_ok());
}

#[test]
fn when_neither_binary_takes_the_state_every_instance_is_stopped_gracefully() {
    let port = free_port();
    let dir = chatty_dir(port);
    let mut h = Hotrun::start(dir.path(), &[]);
    let before = pids(&wait_online(dir.path()), "web");
    let out = upgrade(dir.path(), &["--refuse-state", "--refuse-state"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("upgrade not done: hotrun stopped"), "{err}");
    h.wait_for("refuses its own state too");
    assert_eq!(h.wait_exit().code(), Some(1));
    // Each instance got SIGINT and exited by itself (chatty.js exits 0 on SIGINT), well
    // before its kill_timeout; nothing is left.
    for pid in &before {
        wait_until(&format!("instance {pid} is gone"), || !alive(*pid as i32));
    }
    assert!(h.output().contains("stopping every instance"));
    assert!(!h.output().contains("SIGKILL"), "{}", h.output());
}

#[test]
fn an_instance_waiting_for_its_restart_is_carried_over_and_restarted_after() {
    // A crash loop beside a serving app: its slot waits out a restart delay most of the
    // time, and an upgrade does not wait for it.
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ecosystem.config.js"),
        format!(
            "module.exports = {{ apps: [
               {{ name: 'web', script: '{}', wait_ready: true, env: {{ HTTP_PORT: {port} }} }},
               {{ name: 'bad', script: '{}', restart_delay: 1500, max_restarts: 1000, min_uptime: 100 }}] }};\n",
            app("chatty.js"),
            app("crash.js")
        ),
    )
    .unwrap();
    let h = Hotrun::start(dir.path(), &[]);
    h.wait_for_n("crash start", 2);
    let restarts = |st: &serde_json::Value| {
        app_status(st, "bad")["instances"][0]["restarts"]
            .as_u64()
            .unwrap()
    };
    let before = restarts(&status(dir.path()));
    let out = upgrade(dir.path(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = restarts(&status(dir.path()));
    assert!(after >= before, "restart count kept: {before} -> {after}");
    h.wait_for_n("crash start", 4);
    wait_until("the crash loop goes on after the upgrade", || {
        restarts(&status(dir.path())) > after
    });
    assert!(get(port).is_ok());
}

#[test]
fn after_an_upgrade_a_restarted_instance_is_ready_as_before() {
    // No wait_ready and the port only in the env: once an instance asked hotrun for the
    // port, the next ones are ready when they listen (here 800 ms after their start,
    // later than min_uptime), not by uptime; so after an upgrade too.
    let port = free_port();
    let dir = config_dir(&format!(
        "module.exports = {{ apps: [{{ name: 'web', script: '{}', instances: 2, min_uptime: 200,
           env: {{ HTTP_PORT: {port}, LISTEN_DELAY: 800 }} }}] }};\n",
        app("chatty.js")
    ));
    let _h = Hotrun::start(dir.path(), &[]);
    let before = pids(&wait_online(dir.path()), "web");
    // Ready by uptime at first (the port is not known yet), then they ask for it.
    wait_until("both instances listen", || {
        (0..10)
            .filter_map(|_| get(port).ok())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            == 2
    });
    assert!(upgrade(dir.path(), &[]).status.success());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(before[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("slot 0 restarted and online", || {
        let st = status(dir.path());
        let inst = &app_status(&st, "web")["instances"][0];
        inst["restarts"] == 1 && inst["state"] == "online"
    });
    let st = status(dir.path());
    assert_eq!(
        app_status(&st, "web")["instances"][0]["ready_by"],
        "listen",
        "{st}"
    );
    assert!(get(port).is_ok());
}

#[test]
fn while_the_new_binary_is_checked_hotrun_serves_and_a_sigterm_stops_it_gracefully() {
    let port = free_port();
    let dir = chatty_dir(port);
    let mut h = Hotrun::start(dir.path(), &[]);
    let before = pids(&wait_online(dir.path()), "web");
    // A new binary slow to answer (2 s for each of its checks).
    let slow = dir.path().join("hotrun-slow");
    script(&slow, &format!("sleep 2\nexec {HOTRUN} \"$@\"\n"));
    let client = std::process::Command::new(HOTRUN)
        .args(["upgrade", "--binary", slow.to_str().unwrap()])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    h.wait_for("upgrade: checking");
    // The loop answers meanwhile...
    assert_eq!(pids(&status(dir.path()), "web"), before);
    assert!(get(port).is_ok());
    // ...and a SIGTERM is a graceful stop, not lost in the upgrade.
    h.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(h.wait_exit().code(), Some(0), "{}", h.output());
    let out = client.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("upgrade not done"), "{err}");
    for pid in &before {
        wait_until(&format!("instance {pid} is gone"), || !alive(*pid as i32));
    }
    assert!(!h.output().contains("SIGKILL"), "{}", h.output());
}
