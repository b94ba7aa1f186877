//! The foreground supervisor, with real processes: restarts and crash loops, graceful and
//! forced stops, no instance outliving hotrun, orphans reaped (also as PID 1).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

fn js_config(apps: &str) -> tempfile::TempDir {
    config_dir(&format!("module.exports = {{ apps: [ {apps} ] }};\n"))
}

#[test]
fn a_crash_loop_ends_errored_after_max_restarts_with_growing_delays() {
    let dir = js_config(&format!(
        "{{ name: 'crashy', script: '{}', max_restarts: 4, min_uptime: 1000,
            exp_backoff_restart_delay: 200 }},
          {{ name: 'steady', script: '{}' }}",
        app("crash.js"),
        app("graceful.js"),
    ));
    let mut h = Hotrun::start(dir.path(), &[]);
    h.wait_for("graceful up");
    let errored = h.wait_for("errored: 4 runs in a row shorter than min_uptime (1000 ms)");
    assert!(errored.contains("crashy"), "{errored}");
    assert!(errored.contains("exit code 1"), "{errored}");

    // Four runs, three restarts, each delay at least the backoff: 200, 300, 450 ms.
    let starts: Vec<u64> = h
        .wait_for_n("crash start", 4)
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(starts.len(), 4, "{}", h.output());
    let gaps: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, min) in gaps.iter().zip([200, 300, 450]) {
        assert!(
            *gap >= min,
            "restart gaps {gaps:?} must grow: 200, 300, 450 ms at least"
        );
    }
    assert!(gaps[2] > gaps[0], "gaps {gaps:?}");
    assert_eq!(h.count("errored:"), 1, "said once:\n{}", h.output());

    // The other app is untouched and the errored one is not started again.
    let steady_pid = field(&h.wait_for("graceful up"), "pid");
    assert!(alive(steady_pid));
    h.signal(Signal::SIGTERM);
    assert!(h.wait_exit().success());
    assert_eq!(h.count("crash start"), 4, "{}", h.output());
}

#[test]
fn sigterm_stops_an_app_that_handles_sigint_gracefully() {
    let dir = js_config(&format!(
        "{{ name: 'web', script: '{}', instances: 2, kill_timeout: 20000 }}",
        app("graceful.js")
    ));
    let mut h = Hotrun::start(dir.path(), &[]);
    let pids: Vec<i32> = h
        .wait_for_n("graceful up", 2)
        .iter()
        .map(|l| field(l, "pid"))
        .collect();
    let t0 = Instant::now();
    h.signal(Signal::SIGTERM);
    let status = h.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", h.output());
    // Far less than kill_timeout: the instances exited on SIGINT.
    assert!(t0.elapsed() < Duration::from_secs(15), "{}", h.output());
    assert_eq!(h.count("graceful shutdown"), 2, "{}", h.output());
    assert!(!h.output().contains("SIGKILL"), "{}", h.output());
    for pid in pids {
        assert!(!alive(pid), "instance {pid} survived");
    }
}

#[test]
fn an_app_that_ignores_sigint_is_killed_after_kill_timeout_with_its_children() {
    let dir = js_config(&format!(
        "{{ name: 'stubborn', script: '{}', kill_timeout: 700 }}",
        app("stubborn.js")
    ));
    let mut h = Hotrun::start(dir.path(), &[]);
    let line = h.wait_for("stubborn up");
    let (pid, child) = (field(&line, "pid"), field(&line, "child"));
    assert!(alive(child));
    let t0 = Instant::now();
    h.signal(Signal::SIGINT);
    h.wait_for("stubborn ignores SIGINT");
    let status = h.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", h.output());
    assert!(
        t0.elapsed() >= Duration::from_millis(700),
        "killed before kill_timeout"
    );
    assert!(
        h.output()
            .contains("still running 700 ms after SIGINT; sending SIGKILL"),
        "{}",
        h.output()
    );
    wait_until("the instance and its child are gone", || {
        !alive(pid) && !alive(child)
    });
}

#[test]
fn a_second_stop_signal_kills_at_once() {
    let dir = js_config(&format!(
        "{{ name: 'stubborn', script: '{}', kill_timeout: 60000 }}",
        app("stubborn.js")
    ));
    let mut h = Hotrun::start(dir.path(), &[]);
    let line = h.wait_for("stubborn up");
    let (pid, child) = (field(&line, "pid"), field(&line, "child"));
    h.signal(Signal::SIGTERM);
    let first = std::time::Instant::now();
    h.wait_for("stubborn ignores SIGINT");
    // A repeat counts only after the gap (sooner, it is the same stop delivered twice).
    std::thread::sleep(Duration::from_millis(300).saturating_sub(first.elapsed()));
    h.signal(Signal::SIGTERM);
    let status = h.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", h.output());
    assert!(h
        .output()
        .contains("received again: killing every instance"));
    wait_until("the instance and its child are gone", || {
        !alive(pid) && !alive(child)
    });
}

#[test]
fn no_instance_survives_hotrun_being_sigkilled() {
    let dir = js_config(&format!(
        "{{ name: 'stubborn', script: '{}', instances: 2 }}",
        app("stubborn.js")
    ));
    let mut h = Hotrun::start(dir.path(), &[]);
    let lines = h.wait_for_n("stubborn up", 2);
    let pids: Vec<i32> = lines
        .iter()
        .flat_map(|l| [field(l, "pid"), field(l, "child")])
        .collect();
    assert!(pids.iter().all(|&p| alive(p)));
    h.signal(Signal::SIGKILL);
    h.wait_exit();
    wait_until("every instance and child is gone", || {
        pids.iter().all(|&p| !alive(p))
    });
}

#[test]
fn a_last_line_without_newline_is_still_printed() {
    let dir = js_config(&format!(
        "{{ name: 'tail', script: '{}', autorestart: false }}",
        app("tail.js")
    ));
    let mut h = Hotrun::start(dir.path(), &[]);
    let status = h.wait_exit();
    // Nothing left to run: hotrun exits with the app's code (0 here).
    assert_eq!(status.code(), Some(0), "{}", h.output());
    let out = h.output();
    assert!(out.contains("tail | first line"), "{out}");
    assert!(out.contains("tail | no newline at the end"), "{out}");
}

#[test]
fn orphans_handed_to_hotrun_are_reaped() {
    let dir = js_config(&format!(
        "{{ name: 'orphans', script: '{}' }}",
        app("orphans.js")
    ));
    let mut h = Hotrun::start(dir.path(), &[]);
    h.wait_for("orphans spawned 3");
    let hotrun = h.pid();
    assert_orphans_reaped(hotrun);
    h.signal(Signal::SIGTERM);
    assert!(h.wait_exit().success());
}

/// Waits until the `sleep` orphans show up as hotrun's children, then until they are gone
/// without a zombie left behind.
fn assert_orphans_reaped(hotrun: i32) {
    wait_until("the orphans are handed to hotrun", || {
        children_of(hotrun)
            .iter()
            .filter(|(_, _, c)| c == "sleep")
            .count()
            == 3
    });
    wait_until("the orphans have ended and are reaped", || {
        let kids = children_of(hotrun);
        !kids
            .iter()
            .any(|(_, state, comm)| comm == "sleep" || *state == 'Z')
    });
}

#[test]
fn as_pid_1_hotrun_reaps_orphaned_grandchildren() {
    let probe = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .output();
    if !probe.map(|o| o.status.success()).unwrap_or(false) {
        return cannot_run("`unshare --pid --fork --mount-proc` is not permitted here");
    }
    let dir = js_config(&format!(
        "{{ name: 'orphans', script: '{}' }}",
        app("orphans.js")
    ));
    let mut h = Hotrun::start_with(
        Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "--kill-child", HOTRUN])
            .current_dir(dir.path()),
    );
    h.wait_for("orphans spawned 3");
    // `unshare` forked hotrun, which is PID 1 inside the new namespace.
    let unshare = h.pid();
    let hotrun = children_of(unshare)
        .into_iter()
        .find(|(_, _, comm)| comm == "hotrun")
        .expect("hotrun runs under unshare")
        .0;
    let status = std::fs::read_to_string(format!("/proc/{hotrun}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(
        nspid.trim_end().ends_with("\t1"),
        "hotrun is PID 1 in its namespace: {nspid}"
    );
    assert_orphans_reaped(hotrun);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(hotrun), Signal::SIGTERM).unwrap();
    assert!(h.wait_exit().success(), "{}", h.output());
}

#[test]
fn a_stop_signal_delivered_twice_at_once_still_stops_gracefully() {
    // `timeout -s INT` and Ctrl-C signal hotrun and its process group: two SIGINTs within
    // microseconds. The instance must still get its graceful stop.
    let dir = js_config(&format!(
        "{{ name: 'grace', script: '{}', kill_timeout: 5000 }}",
        app("graceful.js")
    ));
    let mut h = Hotrun::start(dir.path(), &[]);
    wait_online(dir.path());
    h.signal(Signal::SIGINT);
    // The second once the first has been taken (not coalesced with it), a few ms later.
    h.wait_for("SIGINT received: stopping every instance");
    h.signal(Signal::SIGINT);
    let status = h.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", h.output());
    let out = h.output();
    assert!(!out.contains("killing every instance"), "{out}");
    assert!(
        out.contains("graceful shutdown"),
        "the instance stopped gracefully: {out}"
    );
}

#[test]
fn hotrun_under_timeout_s_int_stops_gracefully() {
    // coreutils' `timeout -s INT` (a CI step's time limit): it sends SIGINT to hotrun and
    // then to its own process group, which hotrun is in: two SIGINTs at once, for real.
    let dir = js_config(&format!(
        "{{ name: 'grace', script: '{}', instances: 2, kill_timeout: 5000 }}",
        app("graceful.js")
    ));
    let mut h = Hotrun::start_with(
        Command::new("timeout")
            .args(["--preserve-status", "-s", "INT", "6"])
            .arg(HOTRUN)
            .current_dir(dir.path()),
    );
    // Should the test fail before `timeout` fires, hotrun (not `timeout`) is killed.
    struct KillOnDrop(i32);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let comm = std::fs::read_to_string(format!("/proc/{}/comm", self.0));
            if comm.is_ok_and(|c| c.trim() == "hotrun") {
                let pid = nix::unistd::Pid::from_raw(self.0);
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            }
        }
    }
    let st = wait_online(dir.path());
    let hotrun = st["pid"].as_i64().map(|p| p as i32);
    let _guard = hotrun.map(KillOnDrop);
    let instances = pids(&st, "grace");
    assert_eq!(instances.len(), 2, "{st}");
    let status = h.wait_exit();
    let out = h.output();
    assert_eq!(status.code(), Some(0), "hotrun's own exit code: {out}");
    assert!(
        out.contains("SIGINT received: stopping every instance"),
        "{out}"
    );
    assert!(!out.contains("killing every instance"), "{out}");
    assert!(!out.contains("SIGKILL"), "{out}");
    assert_eq!(out.matches("graceful shutdown").count(), 2, "{out}");
    for pid in instances {
        assert!(!alive(pid as i32), "instance {pid} is gone");
    }
}

/// Pids of live processes whose environment holds `entry` (NAME=value).
fn with_env(entry: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if environ.split(|&b| b == 0).any(|v| v == entry.as_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn a_stop_signal_during_a_start_storm_is_answered_at_once() {
    // 500 instances: hotrun starts them in batches and reads signals between batches, so
    // a SIGINT sent once the first ones run stops the storm instead of waiting for it.
    let dir = tempfile::tempdir().unwrap();
    let mark = format!("STORM={}", std::process::id());
    std::fs::write(
        dir.path().join("ecosystem.config.js"),
        format!(
            "module.exports = {{ apps: [{{ name: 'storm', script: 'sh', instances: 500,
               args: ['-c', 'echo $NODE_APP_INSTANCE >> starts.log; exec sleep 600'],
               env: {{ STORM: '{}' }} }}] }};\n",
            std::process::id()
        ),
    )
    .unwrap();
    let mut h = Hotrun::start(dir.path(), &[]);
    let starts = dir.path().join("starts.log");
    let count = || {
        std::fs::read_to_string(&starts)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    wait_until("the first instances run", || count() >= 16);
    h.signal(Signal::SIGINT);
    assert!(h.wait_exit().success(), "{}", h.output());
    assert!(h.output().contains("SIGINT received"), "{}", h.output());
    let started = count();
    assert!(
        started < 500,
        "every instance was started before the signal was read"
    );
    let left = with_env(&mark);
    for &pid in &left {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
    assert!(left.is_empty(), "{} instances outlived hotrun", left.len());
    eprintln!("{started} of 500 instances had started when SIGINT was read");
}

#[test]
fn instances_start_with_no_signal_ignored_whatever_hotrun_inherited() {
    // `nohup hotrun`, `hotrun &` in a script: hotrun starts with SIGINT, SIGQUIT (and here
    // SIGUSR2) ignored; its instances must not inherit that.
    use std::os::unix::process::CommandExt;
    let dir = js_config("{ name: 'sleeper', script: 'sleep', args: '600' }");
    let mut cmd = Command::new(HOTRUN);
    cmd.current_dir(dir.path());
    // SAFETY: only sigaction runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            use nix::sys::signal::{signal, SigHandler};
            for sig in [Signal::SIGINT, Signal::SIGQUIT, Signal::SIGUSR2] {
                let _ = signal(sig, SigHandler::SigIgn);
            }
            Ok(())
        });
    }
    let mut h = Hotrun::start_with(&mut cmd);
    let st = wait_online(dir.path());
    let pid = pids(&st, "sleeper")[0];
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ignored = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(
        u64::from_str_radix(&ignored, 16).unwrap(),
        0,
        "SigIgn {ignored}"
    );
    // So SIGINT stops it gracefully, without kill_timeout's SIGKILL.
    h.signal(Signal::SIGTERM);
    assert!(h.wait_exit().success());
    assert!(!h.output().contains("SIGKILL"), "{}", h.output());
}

#[test]
fn every_line_an_instance_writes_before_it_exits_is_printed() {
    // 20,000 lines (2 MB, far more than a pipe holds) written at once, then exit 7: the
    // pipe is read to its end after the instance is gone and its slot has forgotten it.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("burst.log");
    std::fs::write(
        dir.path().join("ecosystem.config.js"),
        format!(
            "module.exports = {{ apps: [{{ name: 'burst', script: '{}', autorestart: false,
               out_file: '{}' }}] }};\n",
            app("burst_exit.js"),
            log.display()
        ),
    )
    .unwrap();
    let mut h = Hotrun::start(dir.path(), &[]);
    assert_eq!(h.wait_exit().code(), Some(7), "{}", h.output());
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 20_000, "{:?}", lines.last());
    for (i, line) in lines.iter().enumerate() {
        assert!(line.starts_with(&format!("burst {i} ")), "line {i}: {line}");
    }
}
