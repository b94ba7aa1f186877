//! How connections reach instances, loaded as production loads it: many concurrent Node
//! HTTP clients (fixtures/load/client.js) against CPU-bound instances that share one port,
//! with the socket handed over the IPC channel (port known only from the app's env) or
//! inherited (port declared in the ecosystem file). Every request is answered: none fails,
//! none hangs.

mod common;

use common::http::free_port;
use common::node_load::{run_for, Clients, Report};
use common::procfs::{listening_fds, O_NONBLOCK};
use common::*;

/// A folder with fixtures/apps/cpu.js as `server.js`: app `web`, `instances` instances,
/// HTTP_PORT = `port`, and `extra` keys.
fn cpu_dir(port: u16, instances: usize, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(app("cpu.js"), dir.path().join("server.js")).unwrap();
    let config = format!(
        "module.exports = {{ apps: [{{ name: 'web', script: 'server.js', instances: {instances},
           wait_ready: true, env: {{ HTTP_PORT: {port} }}, {extra} }}] }};\n"
    );
    std::fs::write(dir.path().join("ecosystem.config.js"), config).unwrap();
    dir
}

/// Every instance's listening socket on `port` is non-blocking: an instance that loses the
/// race for a connection returns to its event loop instead of sleeping in accept.
fn assert_listeners_non_blocking(pids: &[i64], port: u16) {
    for &pid in pids {
        let fds = listening_fds(pid as i32, port);
        assert!(!fds.is_empty(), "instance {pid} holds no socket on {port}");
        for (fd, flags) in fds {
            assert!(
                flags & O_NONBLOCK != 0,
                "instance {pid}: fd {fd} listening on {port} is blocking (flags {flags:o})"
            );
        }
    }
}

/// Rounds of 16 concurrent clients, keep-alive and new connection per request in turn:
/// the sum of what they saw.
fn rounds(port: u16, n: usize, ms: u64) -> Report {
    let mut sum = Report::default();
    for round in 0..n {
        let mut c = Clients::new(16);
        c.timeout_ms = 3000;
        if round % 2 == 0 {
            c = c.keep_alive();
        }
        let r = run_for(port, c, ms);
        assert!(
            r.failed == 0 && r.hung == 0,
            "round {round} ({}): {} failed, {} hung of {}: {:?} {:?}",
            if c.keep_alive { "keep-alive" } else { "new connection" },
            r.failed,
            r.hung,
            r.requests,
            r.errors,
            r.samples
        );
        sum.requests += r.requests;
        sum.ok += r.ok;
        for (pid, n) in r.pids {
            *sum.pids.entry(pid).or_default() += n;
        }
    }
    sum
}

fn no_request_hangs(declare_port: bool) {
    let port = free_port();
    let extra = if declare_port {
        format!("port: {port},")
    } else {
        String::new()
    };
    let dir = cpu_dir(port, 3, &extra);
    let _h = Hotrun::start(dir.path(), &[]);
    let status = wait_online(dir.path());
    let pids = pids(&status, "web");
    assert_listeners_non_blocking(&pids, port);
    let sum = rounds(port, 10, 600);
    assert!(sum.ok > 0, "no request was answered");
    // The load changed nothing in the sockets' mode.
    assert_listeners_non_blocking(&pids, port);
}

#[test]
fn a_port_known_only_from_the_env_answers_every_request_of_16_concurrent_clients() {
    no_request_hangs(false);
}

#[test]
fn a_declared_port_answers_every_request_of_16_concurrent_clients() {
    no_request_hangs(true);
}
