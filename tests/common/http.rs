//! A small HTTP/1.1 load client for the zero-downtime tests: one thread that sends GET
//! requests back to back, either on a new connection each or on a kept-alive one, and
//! counts what failed. With keep-alive, a request that fails on a reused idle connection
//! before any byte of the response is retried once on a new connection, as RFC 9110
//! (9.2.2) expects of clients for idempotent requests; those retries are counted apart.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub ok: u64,
    pub failed: u64,
    pub retries: u64,
    /// The first few failures, for the assertion message.
    pub errors: Vec<String>,
    /// The pids that answered ("pid N" in the body).
    pub pids: BTreeSet<i32>,
}

pub struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    handle: Option<JoinHandle<Stats>>,
}

impl Load {
    /// Starts sending requests to 127.0.0.1:`port`.
    pub fn start(port: u16, keep_alive: bool) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let (s, d) = (stop.clone(), done.clone());
        let handle = thread::spawn(move || run(port, keep_alive, &s, &d));
        Load {
            stop,
            done,
            handle: Some(handle),
        }
    }

    /// How many requests have completed so far.
    pub fn completed(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    pub fn finish(mut self) -> Stats {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().expect("load thread")
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn run(port: u16, keep_alive: bool, stop: &AtomicBool, done: &AtomicU64) -> Stats {
    let stats = Mutex::new(Stats::default());
    let mut conn: Option<TcpStream> = None;
    while !stop.load(Ordering::Relaxed) {
        let result = if keep_alive {
            let reused = conn.is_some();
            match request(&mut conn, port, true) {
                Err(Failure::BeforeResponse(e)) if reused => {
                    stats.lock().unwrap().retries += 1;
                    conn = None;
                    request(&mut conn, port, true)
                        .map_err(|f| format!("after a retry: {f:?} ({e})"))
                }
                other => other.map_err(|f| format!("{f:?}")),
            }
        } else {
            conn = None;
            request(&mut conn, port, false).map_err(|f| format!("{f:?}"))
        };
        let mut s = stats.lock().unwrap();
        match result {
            Ok(body) => {
                s.ok += 1;
                if let Some(pid) = body
                    .split_whitespace()
                    .skip_while(|w| *w != "pid")
                    .nth(1)
                    .and_then(|p| p.parse().ok())
                {
                    s.pids.insert(pid);
                }
            }
            Err(e) => {
                s.failed += 1;
                conn = None;
                if s.errors.len() < 5 {
                    s.errors.push(e);
                }
            }
        }
        drop(s);
        done.fetch_add(1, Ordering::Relaxed);
        // Leave the small machine some room for the instances being started.
        thread::sleep(Duration::from_millis(1));
    }
    stats.into_inner().unwrap()
}

#[derive(Debug)]
enum Failure {
    /// Nothing of a response arrived (connection refused, reset or closed first).
    BeforeResponse(String),
    /// A response started but was cut or was not a 200.
    Broken(String),
}

/// One GET; keeps the connection in `conn` when kept alive.
fn request(conn: &mut Option<TcpStream>, port: u16, keep_alive: bool) -> Result<String, Failure> {
    if conn.is_none() {
        let s = TcpStream::connect(("127.0.0.1", port))
            .map_err(|e| Failure::BeforeResponse(format!("connect: {e}")))?;
        s.set_read_timeout(Some(Duration::from_secs(20))).ok();
        *conn = Some(s);
    }
    let stream = conn.as_mut().unwrap();
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let req = format!("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: {connection}\r\n\r\n");
    stream
        .write_all(req.as_bytes())
        .map_err(|e| Failure::BeforeResponse(format!("write: {e}")))?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if buf.is_empty() => return Err(Failure::BeforeResponse(format!("read: {e}"))),
            Err(e) => return Err(Failure::Broken(format!("read: {e}"))),
        };
        if n == 0 {
            return Err(if buf.is_empty() {
                Failure::BeforeResponse("closed before any response byte".into())
            } else {
                Failure::Broken("closed inside the headers".into())
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    if !head.starts_with("HTTP/1.1 200") {
        return Err(Failure::Broken(
            head.lines().next().unwrap_or("").to_string(),
        ));
    }
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .ok_or_else(|| Failure::Broken("no content-length".into()))?;
    while buf.len() < header_end + length {
        let n = stream
            .read(&mut chunk)
            .map_err(|e| Failure::Broken(format!("read body: {e}")))?;
        if n == 0 {
            return Err(Failure::Broken("closed inside the body".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[header_end..header_end + length]).to_string();
    if !keep_alive || head.to_ascii_lowercase().contains("connection: close") {
        *conn = None;
    }
    Ok(body)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One GET on a new connection; the body.
pub fn get(port: u16) -> Result<String, String> {
    let mut conn = None;
    request(&mut conn, port, false).map_err(|f| format!("{f:?}"))
}

/// A port that is free now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
