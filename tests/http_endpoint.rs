//! The opt-in HTTP endpoint (`--http`): /metrics that promtool accepts and whose counters
//! move, /readyz through a start and a SIGTERM with `shutdown_delay` under load, a port in
//! use refused before anything starts, and bad clients that harm nothing.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::http::{free_port, get};
use common::node_load::{Clients, NodeLoad};
use common::*;

/// One request on a new connection: the status code and the body, or None when nothing
/// answers.
fn fetch(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((code, body))
}

fn metrics(port: u16) -> String {
    let (code, body) = fetch(port, "/metrics").expect("the endpoint answers");
    assert_eq!(code, 200, "{body}");
    body
}

/// The value of the sample `name{labels}` (labels as written, in order), 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn promtool_accepts(text: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        return cannot_run("promtool is not installed (Debian: apt-get install prometheus)");
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_parse_with_promtool_and_their_counters_move_after_a_reload_a_restart_and_a_memory_replacement(
) {
    let (port, http) = (free_port(), free_port());
    let dir = http_dir(
        port,
        "instances: 2, max_memory_restart: '150M', build: 'true'",
    );
    let h = Hotrun::start_with(
        Command::new(HOTRUN)
            .args([
                "--http",
                &format!("127.0.0.1:{http}"),
                "--memory-interval",
                "200",
            ])
            .current_dir(dir.path())
            .env("BLOAT_MB", "200")
            .env("BLOAT_INSTANCE", "1")
            .env("BLOAT_DELAY", "1000"),
    );
    h.wait_for(&format!(
        "serving /metrics, /livez, /readyz and /status on http://127.0.0.1:{http}"
    ));
    wait_online(dir.path());
    let first = metrics(http);
    promtool_accepts(&first);
    for series in [
        r#"hotrun_instance_up{app="web",instance="0"}"#,
        r#"hotrun_instance_ready{app="web",instance="1"}"#,
        r#"hotrun_app_instances_wanted{app="web"}"#,
    ] {
        assert!(sample(&first, series) >= 1.0, "{series}: {first}");
    }
    assert!(
        sample(
            &first,
            r#"hotrun_instance_memory_bytes{app="web",instance="0"}"#
        ) > 1e6
    );
    assert!(sample(&first, "hotrun_process_resident_memory_bytes") > 1e6);
    assert!(sample(&first, "hotrun_process_open_fds") > 3.0);
    assert_eq!(
        sample(&first, r#"hotrun_builds_total{app="web",result="ok"}"#),
        1.0,
        "{first}"
    );

    // A memory replacement (instance 1 holds 200 MB a second after it is ready).
    let memory = r#"hotrun_reloads_total{app="web",trigger="memory",result="ok"}"#;
    wait_until("the memory replacement is counted", || {
        sample(&metrics(http), memory) == 1.0
    });
    // A reload.
    assert!(hotrun_cmd(dir.path(), &["reload"]).status.success());
    let text = metrics(http);
    let reload = r#"hotrun_reloads_total{app="web",trigger="hotrun reload",result="ok"}"#;
    assert_eq!(sample(&text, reload), 1.0, "{text}");
    assert_eq!(
        sample(&text, r#"hotrun_builds_total{app="web",result="ok"}"#),
        2.0,
        "the reload's build, none for the memory replacement: {text}"
    );
    assert!(sample(&text, r#"hotrun_reload_duration_seconds_count{app="web"}"#) >= 2.0);
    // A restart: an instance killed.
    let pid = pids(&status(dir.path()), "web")[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("the restart is counted", || {
        sample(&metrics(http), r#"hotrun_restarts_total{app="web"}"#) >= 1.0
    });
    promtool_accepts(&metrics(http));
}

#[test]
fn readyz_is_503_before_ready_200_after_and_503_at_sigterm_while_instances_serve_out_the_delay() {
    let (port, http) = (free_port(), free_port());
    let dir = http_dir(port, "instances: 2, shutdown_delay: 3000");
    let mut h = Hotrun::start_with(
        Command::new(HOTRUN)
            .args(["--http", &format!("127.0.0.1:{http}")])
            .current_dir(dir.path())
            .env("READY_DELAY", "1500"),
    );
    // Bound before anything starts; not ready until the instances are.
    let mut before = None;
    wait_until("the endpoint answers", || {
        before = fetch(http, "/readyz");
        before.is_some()
    });
    let (code, body) = before.unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains(r#""ready":false"#), "{body}");
    assert!(
        body.contains("web|0 is starting"),
        "names what is missing: {body}"
    );
    wait_until("/readyz is 200", || {
        fetch(http, "/readyz").is_some_and(|(c, _)| c == 200)
    });
    assert_eq!(fetch(http, "/livez").unwrap().0, 200);
    let (code, body) = fetch(http, "/status").unwrap();
    assert_eq!(code, 200);
    let st: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(st["apps"][0]["instances"].as_array().unwrap().len(), 2);

    let load = NodeLoad::start(port, Clients::new(16));
    let pids_before = pids(&status(dir.path()), "web");
    h.signal(nix::sys::signal::Signal::SIGTERM);
    let signalled = Instant::now();
    h.wait_for("SIGTERM received: not ready any more");
    let (code, body) = fetch(http, "/readyz").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains(r#""stopping":true"#), "{body}");
    let out = hotrun_cmd(dir.path(), &["status", "--ready", "--verbose"]);
    assert!(!out.status.success(), "status --ready says not ready");
    assert!(String::from_utf8_lossy(&out.stderr).contains("hotrun is stopping"));
    // The instances serve on for the delay: the same ones, every request answered, up to
    // the moment the clients stop, 200 ms before the delay ends (as an orchestrator's
    // traffic does; requests in flight then are answered too).
    while signalled.elapsed() < Duration::from_millis(2800) {
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            pids_before.iter().all(|&p| alive(p as i32)),
            "stopped early"
        );
    }
    let served = load.finish();
    assert_eq!((served.failed, served.hung), (0, 0), "{served:?}");
    assert!(served.ok > 100, "{served:?}");
    // Then they stop gracefully and hotrun exits 0.
    h.wait_for("shutdown_delay passed: stopping every instance");
    assert!(signalled.elapsed() >= Duration::from_millis(2900));
    assert!(h.wait_exit().success(), "{}", h.output());
}

#[test]
fn a_port_in_use_is_refused_before_anything_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let http = taken.local_addr().unwrap().port();
    let port = free_port();
    let dir = http_dir(port, "instances: 2");
    let out = Command::new(HOTRUN)
        .args(["--http", &format!("127.0.0.1:{http}")])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot serve --http 127.0.0.1:{http}: the address is in use"
        )),
        "{err}"
    );
    assert!(!err.contains("ready"), "no instance started: {err}");
    assert!(get(port).is_err(), "nothing listens on the app's port");
    // A bad address says what is expected.
    let out = Command::new(HOTRUN)
        .args(["--http", "nine-six-one-five"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("not an address and port such as 127.0.0.1:9615"));
}

#[test]
fn malformed_and_slow_clients_harm_neither_the_endpoint_nor_the_runner() {
    let (port, http) = (free_port(), free_port());
    let dir = http_dir(port, "instances: 2");
    let h = Hotrun::start(dir.path(), &["--http", &format!("127.0.0.1:{http}")]);
    wait_online(dir.path());
    // 100 idle connections that never send a byte.
    let idle: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(("127.0.0.1", http)).unwrap())
        .collect();
    // A request line of 1 MB: refused, the connection closed.
    let mut big = TcpStream::connect(("127.0.0.1", http)).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(1 << 20));
    let _ = big.write_all(line.as_bytes());
    let mut answer = String::new();
    let _ = big.read_to_string(&mut answer);
    assert!(
        !answer.starts_with("HTTP/1.1 200"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    // Garbage, a wrong method, an unknown path.
    let mut junk = TcpStream::connect(("127.0.0.1", http)).unwrap();
    let _ = junk.write_all(b"\x00\x01\x02 not http\r\n\r\n");
    assert_eq!(fetch(http, "/nothing").unwrap().0, 404);
    let mut post = TcpStream::connect(("127.0.0.1", http)).unwrap();
    write!(
        post,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    post.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 405"), "{text}");
    // Meanwhile the endpoint, the control socket and the apps answer.
    for _ in 0..5 {
        assert_eq!(fetch(http, "/livez").unwrap().0, 200);
        assert!(metrics(http).contains("hotrun_instance_up"));
        assert!(get(port).is_ok());
    }
    assert_eq!(
        app_status(&status(dir.path()), "web")["instances"][1]["state"],
        "online"
    );
    drop(idle);
    assert!(h.output().contains("serving /metrics"));
}

#[test]
fn hotrun_stop_or_a_second_sigterm_during_the_shutdown_delay_stops_at_once() {
    for second in ["hotrun stop", "SIGTERM"] {
        let port = free_port();
        let dir = http_dir(port, "instances: 2, shutdown_delay: 60000");
        let mut h = Hotrun::start(dir.path(), &[]);
        wait_online(dir.path());
        h.signal(nix::sys::signal::Signal::SIGTERM);
        h.wait_for("SIGTERM received: not ready any more");
        let asked = Instant::now();
        if second == "hotrun stop" {
            assert!(hotrun_cmd(dir.path(), &["stop"]).status.success());
        } else {
            // Apart from the first by more than a repeat of one delivery.
            std::thread::sleep(Duration::from_millis(600));
            h.signal(nix::sys::signal::Signal::SIGTERM);
        }
        assert!(h.wait_exit().success(), "{second}: {}", h.output());
        assert!(
            asked.elapsed() < Duration::from_secs(15),
            "{second}: stopped after {:?}",
            asked.elapsed()
        );
        assert!(
            !h.output().contains("shutdown_delay passed"),
            "{}",
            h.output()
        );
    }
}
