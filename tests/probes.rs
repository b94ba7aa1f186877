//! Probes with the real binary: an app that listens and says ready at once but answers
//! 503 until it is warm (fixtures/apps/warmup.js, as `next start` does before its first
//! page renders) is ready only once its readiness probe passes, at the first start and in
//! reloads under load; a probe of a wrong path says so, and `hotrun check` fails on it; an
//! instance whose event loop is stuck (fixtures/apps/blocker.js) fails its liveness probe
//! and is replaced while the others serve on.

mod common;

use std::time::{Duration, Instant};

use common::http::free_port;
use common::node_load::{Clients, NodeLoad};
use common::*;

/// A folder with fixtures/apps/warmup.js as `server.js`: app `web`, `instances`, its port
/// from HTTP_PORT, and `extra` keys.
fn warmup_dir(port: u16, instances: usize, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(app("warmup.js"), dir.path().join("server.js")).unwrap();
    let config = format!(
        "module.exports = {{ apps: [{{ name: 'web', script: 'server.js', instances: {instances},
           wait_ready: true, env: {{ HTTP_PORT: {port} }}, {extra} }}] }};\n"
    );
    std::fs::write(dir.path().join("ecosystem.config.js"), config).unwrap();
    dir
}

const PROBE: &str = "readiness_probe: { http: '/health', period: 100, timeout: 1000 },";

#[test]
fn an_instance_is_ready_only_once_its_probe_passes() {
    let port = free_port();
    let dir = warmup_dir(port, 2, PROBE);
    let _h = Hotrun::start(dir.path(), &[]);
    wait_until("hotrun answers", || {
        hotrun_cmd(dir.path(), &["status", "--json"])
            .status
            .success()
    });
    // Watched every 50 ms: the first time an instance is seen online, it has been up for
    // its 2 s warm-up already, and its probe says 200.
    let until = Instant::now() + Duration::from_secs(20);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 2 {
        assert!(Instant::now() < until, "not ready in 20 s");
        let st = status(dir.path());
        for inst in app_status(&st, "web")["instances"].as_array().unwrap() {
            if inst["state"] == "online" && seen.insert(inst["id"].as_u64().unwrap()) {
                assert!(inst["uptime_ms"].as_u64().unwrap() >= 2000, "{inst}");
                assert_eq!(inst["ready_by"], "message", "its own signal, held: {inst}");
                assert_eq!(inst["probe"]["ok"], true, "{inst}");
                assert_eq!(inst["probe"]["detail"], "200 OK", "{inst}");
            } else if inst["state"] == "starting" {
                // Not run yet, no socket of its own yet (before it listens), or 503.
                assert_ne!(inst["probe"]["ok"], true, "{inst}");
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The table says it too.
    let out = hotrun_cmd(dir.path(), &["status"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.lines().next().unwrap().ends_with("probe"), "{table}");
    assert_eq!(table.matches("ok 200 OK at ").count(), 2, "{table}");
}

/// 3 reloads of the warm-up app under 16 clients (a new connection per request): what
/// they saw.
fn reloads_under_load(extra: &str) -> common::node_load::Report {
    let port = free_port();
    let dir = warmup_dir(port, 2, extra);
    let _h = Hotrun::start(dir.path(), &[]);
    wait_online(dir.path());
    // Both warm before the load starts.
    std::thread::sleep(Duration::from_millis(2200));
    let load = NodeLoad::start(port, Clients::new(16));
    for n in 0..3 {
        let out = hotrun_cmd(dir.path(), &["reload"]);
        assert!(
            out.status.success(),
            "reload {n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    load.finish()
}

#[test]
fn reloads_under_load_serve_no_request_from_an_instance_still_warming_up() {
    let probed = reloads_under_load(PROBE);
    assert_eq!((probed.failed, probed.hung), (0, 0), "{probed:?}");
    assert!(probed.ok > 100, "{probed:?}");
    // The same without the probe: its own ready message comes before it is warm, and
    // clients get its 503s. (What the probe prevents, shown on this machine.)
    let unprobed = reloads_under_load("");
    assert!(
        unprobed.errors.get("HTTP_503").copied().unwrap_or(0) > 0,
        "{unprobed:?}"
    );
}

#[test]
fn a_probe_of_a_wrong_path_says_what_it_got_and_fails_the_check() {
    let port = free_port();
    let extra = "readiness_probe: { http: '/nope', period: 100 }, listen_timeout: 1500,
                 env_production: { WARMUP_MS: 0 },";
    let dir = warmup_dir(port, 1, extra);
    let h = Hotrun::start(dir.path(), &["--env", "production"]);
    let line = h.wait_for("listen_timeout");
    assert!(
        line.contains(
            "web not ready after 1500 ms (listen_timeout); readiness probe GET /nope: 404 Not Found (its own ready signal came); still waiting"
        ),
        "{line}"
    );
    let st = status(dir.path());
    let inst = &app_status(&st, "web")["instances"][0];
    assert_eq!(inst["state"], "starting", "{inst}");
    assert_eq!(inst["probe"]["ok"], false, "{inst}");
    drop(h);

    let out = hotrun_cmd(dir.path(), &["check", "--env", "production"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "hotrun check: FAILED: web: an instance is not ready: not ready after 1500 ms (listen_timeout); readiness probe GET /nope: 404 Not Found"
        ),
        "{stdout}"
    );
}

#[test]
fn a_bad_probe_is_a_config_error_at_its_line_and_column() {
    let table = [
        (
            "readiness_probe: { http: 'health' }",
            "ecosystem.config.js:2:28: readiness_probe.http must be a path starting with / (such as '/health') (got \"health\")",
        ),
        (
            "readiness_probe: { htp: '/health' }",
            "ecosystem.config.js:2:22: readiness_probe.htp is not a probe setting",
        ),
        (
            "readiness_probe: {}",
            "readiness_probe needs a check: http: '/health', tcp: true or exec: 'command'",
        ),
        (
            "readiness_probe: { http: '/a', tcp: true }",
            "readiness_probe.tcp: a probe has one check: http, tcp or exec",
        ),
        (
            "readiness_probe: { tcp: true, period: 0 }",
            "readiness_probe.period must be a number of milliseconds, 1 or more (got 0)",
        ),
        (
            "readinessProbe: { http: '/h', failureThreshold: 0 }",
            "readinessProbe.failureThreshold must be a whole number, 1 or more (got 0)",
        ),
        (
            "readiness_probe: { exec: '' }",
            "readiness_probe.exec must be a command (run with sh -c) (got \"\")",
        ),
        (
            "livenessProbe: { tcp: 'yes' }",
            "livenessProbe.tcp must be true (got \"yes\")",
        ),
        (
            "canary: { hold: 0 }",
            "canary.hold must be a number of milliseconds, 1 or more (got 0)",
        ),
        ("canary: { hld: 5 }", "canary.hld is not a canary setting (settings: hold)"),
        (
            "readiness_probe: '/health'",
            "readiness_probe must be an object such as { http: '/health' } or { tcp: true } (got \"/health\")",
        ),
    ];
    for (key, want) in table {
        let dir = config_dir(&format!(
            "module.exports = {{ apps: [{{ name: 'web', script: 'sleep', args: '60',\n  {key} }}] }};\n"
        ));
        let out = hotrun_cmd(dir.path(), &["config"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{key}: {err}");
        assert!(err.contains(want), "{key}:\n{err}");
        assert!(err.contains("ecosystem.config.js:2:"), "{key}: {err}");
    }
    // A good one, as `config --json` shows it.
    let dir = config_dir(
        "module.exports = { apps: [{ name: 'web', script: 'sleep', args: '60',
           readinessProbe: { http: '/health', initialDelay: 500 } }] };\n",
    );
    let out = hotrun_cmd(dir.path(), &["config", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["apps"][0]["readiness_probe"],
        serde_json::json!({"check": {"http": {"path": "/health"}}, "period": 1000,
                           "timeout": 1000, "failure_threshold": 3, "initial_delay": 500})
    );
}

#[test]
fn an_instance_whose_event_loop_is_stuck_is_replaced_and_the_others_serve_on() {
    stuck_instance_is_replaced("http: '/health'", "GET /health");
}

#[test]
fn a_tcp_liveness_probe_sees_a_stuck_instance_that_no_longer_accepts() {
    // The kernel still completes the connection; the instance never accepts it.
    stuck_instance_is_replaced("tcp: true", "a TCP connection");
}

/// Instance 0 of fixtures/apps/blocker.js blocks its event loop under 16 clients; the
/// liveness probe `check` (described as `described`) replaces it, the others serve on.
fn stuck_instance_is_replaced(check: &str, described: &str) {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(app("blocker.js"), dir.path().join("server.js")).unwrap();
    std::fs::write(dir.path().join("block"), "").unwrap();
    let config = format!(
        "module.exports = {{ apps: [{{ name: 'web', script: 'server.js', instances: 3,
           wait_ready: true, kill_timeout: 1000,
           liveness_probe: {{ {check}, period: 200, timeout: 300, failure_threshold: 3 }},
           env: {{ HTTP_PORT: {port}, BLOCK_FILE: '{}', BLOCK_AFTER_MS: 1500 }} }}] }};\n",
        dir.path().join("block").display()
    );
    std::fs::write(dir.path().join("ecosystem.config.js"), config).unwrap();
    let h = Hotrun::start(dir.path(), &[]);
    let old = pids(&wait_online(dir.path()), "web");
    let load = NodeLoad::start(port, Clients::new(16));
    let line = h.wait_for("blocks its event loop");
    let stuck: i64 = line
        .split("pid ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let blocked = Instant::now();
    assert!(old.contains(&stuck), "{line}");
    let said = h.wait_for("failed 3 times in a row");
    assert!(
        said.contains(&format!("its liveness probe {described} failed 3 times in a row (last: no answer within 300 ms) -> replacing it")),
        "{said}"
    );
    wait_until("the stuck instance is replaced", || {
        let now = pids(&status(dir.path()), "web");
        !now.contains(&stuck) && now.len() == 3
    });
    let took = blocked.elapsed();
    eprintln!("replaced {} ms after it blocked", took.as_millis());
    // period x threshold, the 3 timeouts, and the successor's start (well under 1 s
    // here), with slack for a loaded machine.
    assert!(
        took < Duration::from_millis(200 * 3 + 300 * 3 + 3000),
        "{took:?}"
    );
    let during = load.finish();
    eprintln!("load while it was stuck and replaced: {during:?}");
    // What fails is what the stuck instance held: each client's request that reached it
    // before its first failed probe took it out of the kernel's choice (one per client
    // at most); no request hangs, every other one is answered.
    assert_eq!(during.hung, 0, "{during:?}");
    assert!(during.failed <= 16, "{during:?}");
    assert!(during.ok > 300, "{during:?}");
    let st = status(dir.path());
    let now = pids(&st, "web");
    for pid in old.iter().filter(|&&p| p != stuck) {
        assert!(now.contains(pid), "the others are untouched: {st}");
    }
    for inst in app_status(&st, "web")["instances"].as_array().unwrap() {
        assert_eq!(inst["restarts"], 0, "{st}");
        assert_eq!(inst["liveness"]["ok"], true, "{inst}");
    }
    assert_eq!(
        app_status(&st, "web")["last_reload"]["trigger"],
        "liveness",
        "{st}"
    );
    // Afterwards every instance serves: 16 clients for 2 s, nothing fails.
    let after = common::node_load::run_for(port, Clients::new(16), 2000);
    assert_eq!((after.failed, after.hung), (0, 0), "{after:?}");
    assert_eq!(after.pids.len(), 3, "{after:?}");
}

/// A folder running fixtures/apps/versioned.js at `version`, 3 instances, a canary that
/// holds 3 s, and a liveness probe every 200 ms (2 failures replace).
fn canary_dir(port: u16, version: &str) -> tempfile::TempDir {
    canary_dir_with(port, version, "canary: { hold: 3000 },")
}

/// `canary_dir` with `canary` as the canary key (or none).
fn canary_dir_with(port: u16, version: &str, canary: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(app("versioned.js"), dir.path().join("server.js")).unwrap();
    std::fs::write(dir.path().join("version.txt"), version).unwrap();
    let config = format!(
        "module.exports = {{ apps: [{{ name: 'web', script: 'server.js', instances: 3,
           wait_ready: true, {canary}
           liveness_probe: {{ http: '/health', period: 200, timeout: 500, failure_threshold: 2 }},
           env: {{ HTTP_PORT: {port} }} }}] }};\n"
    );
    std::fs::write(dir.path().join("ecosystem.config.js"), config).unwrap();
    dir
}

#[test]
fn a_canary_that_fails_its_liveness_probe_in_its_hold_is_rolled_back_touching_no_other_slot() {
    let port = free_port();
    let dir = canary_dir(port, "1");
    let h = Hotrun::start(dir.path(), &[]);
    let old = pids(&wait_online(dir.path()), "web");
    let load = NodeLoad::start(port, Clients::new(16));
    std::fs::write(dir.path().join("version.txt"), "bad").unwrap();
    let out = hotrun_cmd(dir.path(), &["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("web|0 reload failed: its liveness probe GET /health failed 2 times in a row (last: 500 Internal Server Error)"),
        "{err}"
    );
    let rolled = h.wait_for("rolled back");
    assert!(rolled.contains("web|0 canary pid"), "{rolled}");
    let during = load.finish();
    eprintln!("load during the canary and its rollback: {during:?}");
    assert_eq!((during.failed, during.hung), (0, 0), "{during:?}");
    // The same 3 old pids serve, none restarted, and the canary is gone.
    let st = status(dir.path());
    assert_eq!(pids(&st, "web"), old, "{st}");
    assert_eq!(app_status(&st, "web")["last_reload"]["result"], "failed");
    let after = common::node_load::run_for(port, Clients::new(16), 1500);
    assert_eq!((after.failed, after.hung), (0, 0), "{after:?}");
    let served: std::collections::BTreeSet<i64> =
        after.pids.keys().map(|p| p.parse().unwrap()).collect();
    assert_eq!(served, old.iter().copied().collect(), "{after:?}");
    assert_eq!(
        h.count("new instance started"),
        1,
        "only the canary started: {}",
        h.output()
    );
}

#[test]
fn a_healthy_canary_holds_then_the_rest_roll() {
    let port = free_port();
    let dir = canary_dir(port, "1");
    let h = Hotrun::start(dir.path(), &[]);
    let old = pids(&wait_online(dir.path()), "web");
    std::fs::write(dir.path().join("version.txt"), "2").unwrap();
    let started = Instant::now();
    let out = hotrun_cmd(dir.path(), &["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() >= Duration::from_millis(3000),
        "the canary held 3 s"
    );
    assert!(
        h.output().contains("canary: holding old pid"),
        "{}",
        h.output()
    );
    let now = pids(&status(dir.path()), "web");
    assert!(now.iter().all(|p| !old.contains(p)), "{now:?} {old:?}");
}

#[test]
fn reload_canary_holds_a_canary_for_this_reload_only() {
    let port = free_port();
    let dir = canary_dir_with(port, "1", "");
    let h = Hotrun::start(dir.path(), &[]);
    wait_online(dir.path());
    let started = Instant::now();
    let out = hotrun_cmd(dir.path(), &["reload", "--canary", "1500"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert_eq!(h.count("canary: holding old pid"), 1, "{}", h.output());
    // The next reload has no canary.
    let out = hotrun_cmd(dir.path(), &["reload"]);
    assert!(out.status.success());
    assert_eq!(h.count("canary: holding old pid"), 1, "{}", h.output());
    let bad = hotrun_cmd(dir.path(), &["reload", "--canary", "0"]);
    assert_eq!(bad.status.code(), Some(2), "a usage error");
}

/// Processes whose command line has `needle`.
fn processes_with(needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| {
            String::from_utf8_lossy(c)
                .replace('\0', " ")
                .contains(needle)
        })
        .count()
}

#[test]
fn exec_probes_gate_readiness_replace_a_sick_instance_and_are_killed_at_their_timeout() {
    let dir = config_dir(
        "module.exports = { apps: [{ name: 'job', script: 'sleep', args: '600',
           readiness_probe: { exec: 'test -f ready.flag || exec sleep 7.77', period: 100, timeout: 300 },
           liveness_probe: { exec: 'kill -0 $HOTRUN_PROBE_PID && test ! -f sick.flag', period: 100, failure_threshold: 2 } }] };\n",
    );
    let h = Hotrun::start(dir.path(), &[]);
    let said = h.wait_for("listen_timeout");
    assert!(
        said.contains("job not ready after 3000 ms (listen_timeout); readiness probe `test -f ready.flag || exec sleep 7.77`: no answer within 300 ms; still waiting"),
        "{said}"
    );
    let st = status(dir.path());
    let inst = &app_status(&st, "job")["instances"][0];
    assert_eq!(inst["state"], "starting", "not ready by uptime: {inst}");
    // The timed-out probes were killed, their `sleep` with them (at most the one running).
    assert!(processes_with("sleep 7.77") <= 1);
    std::fs::write(dir.path().join("ready.flag"), "").unwrap();
    let st = wait_online(dir.path());
    let inst = &app_status(&st, "job")["instances"][0];
    assert_eq!(inst["ready_by"], "probe", "{inst}");
    let first = inst["pid"].as_i64().unwrap();
    wait_until("no timed-out probe is left", || {
        processes_with("sleep 7.77") == 0
    });

    std::fs::write(dir.path().join("sick.flag"), "").unwrap();
    let line = h.wait_for("failed 2 times in a row");
    assert!(
        line.contains("(last: exit code 1) -> replacing it"),
        "{line}"
    );
    std::fs::remove_file(dir.path().join("sick.flag")).unwrap();
    wait_until("the sick instance is replaced", || {
        let st = status(dir.path());
        let inst = &app_status(&st, "job")["instances"][0];
        inst["state"] == "online" && inst["pid"].as_i64() != Some(first)
    });
    let st = status(dir.path());
    assert_eq!(
        app_status(&st, "job")["last_reload"]["trigger"],
        "liveness",
        "{st}"
    );
}

/// A reload's successor learns its port (from its env) only when it listens: its
/// readiness probe, which found no socket of its own before, runs as soon as it has one,
/// not a `period` later. With a 5 s period, 2 reloads of 2 instances end in well under
/// one period each.
#[test]
fn a_successor_is_probed_as_soon_as_it_listens_not_a_period_later() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(app("warmup.js"), dir.path().join("server.js")).unwrap();
    let config = format!(
        "module.exports = {{ apps: [{{ name: 'web', script: 'server.js', instances: 2,
           wait_ready: true, env: {{ HTTP_PORT: {port}, WARMUP_MS: 0 }},
           readiness_probe: {{ http: '/', period: 5000 }} }}] }};\n"
    );
    std::fs::write(dir.path().join("ecosystem.config.js"), config).unwrap();
    let _h = Hotrun::start(dir.path(), &[]);
    wait_online(dir.path());
    for n in 0..2 {
        let started = Instant::now();
        let out = hotrun_cmd(dir.path(), &["reload"]);
        assert!(
            out.status.success(),
            "reload {n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            started.elapsed() < Duration::from_millis(4000),
            "reload {n} took {:?}: a successor waited a probe period",
            started.elapsed()
        );
    }
    let st = status(dir.path());
    for inst in app_status(&st, "web")["instances"].as_array().unwrap() {
        assert_eq!(inst["probe"]["ok"], true, "{inst}");
        assert_eq!(inst["reloads"], 2, "{inst}");
    }
}
