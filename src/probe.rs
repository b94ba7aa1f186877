//! Health probes of one instance, in Kubernetes' vocabulary: `http` (a GET on the
//! instance's own socket; 2xx and 3xx are healthy) or `tcp` (a connection made on its own
//! socket is accepted). A probe connects from 127.77.H.L, which the shared port's program
//! sends to the socket of index H * 256 + L (see `sockets::reuseport`), so it reaches the
//! instance it is meant for and no other, even while that instance gets no traffic (a
//! reload's successor) or every instance shares the port.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Serialize;

use crate::sockets::reuseport::accept_queue;

/// What a probe checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// GET this path; healthy on 2xx and 3xx.
    Http { path: String },
    /// A connection is accepted.
    Tcp,
    /// A command (`sh -c`) exits 0; it gets the instance's pid in `HOTRUN_PROBE_PID`.
    Exec { command: String },
}

/// A probe as the ecosystem file sets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbePlan {
    pub check: Check,
    /// Between two probes.
    #[serde(serialize_with = "crate::plan::ms")]
    pub period: Duration,
    /// The longest a probe may take.
    #[serde(serialize_with = "crate::plan::ms")]
    pub timeout: Duration,
    /// Failures in a row that count (liveness); readiness waits for the first success.
    pub failure_threshold: u32,
    /// After the start, before the first probe.
    #[serde(serialize_with = "crate::plan::ms")]
    pub initial_delay: Duration,
}

impl ProbePlan {
    /// `GET /health`, `TCP`: how it is named in messages.
    pub fn describe(&self) -> String {
        match &self.check {
            Check::Http { path } => format!("GET {path}"),
            Check::Tcp => "a TCP connection".into(),
            Check::Exec { command } => format!("`{command}`"),
        }
    }
}

/// Where the instance's own socket is: the shared port, where to connect from to reach
/// that socket, and (for `tcp`) the socket itself, to see its accept queue empty.
pub struct Target {
    pub port: u16,
    pub source: Ipv4Addr,
    pub listener: Option<OwnedFd>,
}

/// Runs `check` once against `target`: `Ok(what it answered)` when healthy, else why not.
pub async fn run(check: &Check, target: Target, timeout: Duration) -> Result<String, String> {
    match tokio::time::timeout(timeout, attempt(check, &target)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

async fn attempt(check: &Check, target: &Target) -> Result<String, String> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    // Its source port is picked at connect, as any client's, not reserved at bind (and
    // never keeps a port from a listener that binds it meanwhile).
    let _ = nix::sys::socket::setsockopt(
        &socket,
        nix::sys::socket::sockopt::IpBindAddressNoPort,
        &true,
    );
    let _ = socket.set_reuseaddr(true);
    socket
        .bind(SocketAddr::new(target.source.into(), 0))
        .map_err(|e| format!("cannot bind {}: {e}", target.source))?;
    let to = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), target.port);
    let stream = socket
        .connect(to)
        .await
        .map_err(|e| format!("cannot connect to port {}: {e}", target.port))?;
    match check {
        Check::Http { path } => get(stream, target.port, path).await,
        Check::Tcp => accepted(target).await,
        // Run by the loop as a process (see supervisor::probes), never here.
        Check::Exec { .. } => Err("an exec probe is not a connection".into()),
    }
}

/// GET `path` on `stream`; healthy on 2xx and 3xx.
async fn get(stream: tokio::net::TcpStream, port: u16, path: &str) -> Result<String, String> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, format!("127.0.0.1:{port}"))
        .header(hyper::header::USER_AGENT, "hotrun-probe")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("{path}: {e}"))?;
    let answer = sender.send_request(req).await;
    conn.abort();
    let status = answer.map_err(|e| format!("no HTTP answer: {e}"))?.status();
    let said = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let said = said.trim_end().to_string();
    if status.is_success() || status.is_redirection() {
        Ok(said)
    } else {
        Err(said)
    }
}

/// The connection made is accepted: the instance's accept queue empties.
async fn accepted(target: &Target) -> Result<String, String> {
    let Some(fd) = &target.listener else {
        return Ok("connected".into());
    };
    use std::os::fd::AsFd;
    loop {
        match accept_queue(fd.as_fd()) {
            Ok(0) => return Ok("accepted".into()),
            Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A one-shot HTTP server on 127.0.0.1 answering `status` and recording where the
    /// request came from.
    fn server(status: &'static str) -> (u16, std::thread::JoinHandle<std::net::SocketAddr>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut s, from) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap();
            assert!(buf[..n].starts_with(b"GET /health HTTP/1.1\r\n"));
            let body = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
            s.write_all(body.as_bytes()).unwrap();
            from
        });
        (port, t)
    }

    /// `check` of 127.0.0.1:`port` from 127.77.0.3, within `timeout`.
    fn probe_within(port: u16, check: Check, timeout: Duration) -> Result<String, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let target = Target {
            port,
            source: Ipv4Addr::new(127, 77, 0, 3),
            listener: None,
        };
        rt.block_on(run(&check, target, timeout))
    }

    fn probe(port: u16, check: Check) -> Result<String, String> {
        probe_within(port, check, Duration::from_secs(2))
    }

    fn health() -> Check {
        Check::Http {
            path: "/health".into(),
        }
    }

    #[test]
    fn an_http_probe_is_healthy_on_2xx_and_3xx_only_and_comes_from_its_source() {
        let table = [
            ("200 OK", Ok("200 OK".to_string())),
            ("302 Found", Ok("302 Found".into())),
            (
                "503 Service Unavailable",
                Err("503 Service Unavailable".into()),
            ),
            ("404 Not Found", Err("404 Not Found".into())),
        ];
        for (status, want) in table {
            let (port, server) = server(status);
            assert_eq!(probe(port, health()), want, "{status}");
            let from = server.join().unwrap();
            assert_eq!(from.ip().to_string(), "127.77.0.3");
        }
    }

    #[test]
    fn a_probe_of_a_closed_port_or_a_silent_server_fails_saying_why() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let err = probe(port, health()).unwrap_err();
        assert!(
            err.starts_with(&format!("cannot connect to port {port}")),
            "{err}"
        );
        // Accepts and never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let err = probe_within(port, health(), Duration::from_millis(200)).unwrap_err();
        assert_eq!(err, "no answer within 200 ms");
        drop(silent);
    }
}
