//! The opt-in HTTP endpoint (`--http ADDR`, or `HOTRUN_HTTP`): `/metrics` (Prometheus),
//! `/livez`, `/readyz` and `/status`, served with hyper on the runner's own event loop,
//! never in the apps' data path. Each answer asks the loop for its status through the
//! channel the control socket uses, so it is what `hotrun status` would say. Clients are
//! bounded: at most `MAX_CONNECTIONS` at once (more are closed at once), a request's head
//! within `HEAD_TIMEOUT` and at most `MAX_HEAD` bytes, a connection for `MAX_LIFE` at most.

pub mod metrics;

use std::convert::Infallible;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request as HttpRequest, Response as HttpResponse, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};

pub use metrics::Metrics;

use crate::control::protocol::{Request, Status};
use crate::control::server::Incoming;

const MAX_CONNECTIONS: usize = 128;
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HEAD: usize = 16 * 1024;
const MAX_LIFE: Duration = Duration::from_secs(120);
/// How long the loop may take to answer before `/livez` says it is stuck.
const LOOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `addr` (`127.0.0.1:9615`, `[::]:9615`, `localhost:9615`); the error says what to do.
pub fn bind(addr: &str) -> Result<(TcpListener, SocketAddr), String> {
    let resolved: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| {
            format!("--http {addr}: not an address and port such as 127.0.0.1:9615 ({e})")
        })?
        .collect();
    let mut last = None;
    for a in resolved {
        match std::net::TcpListener::bind(a) {
            Ok(l) => {
                let local = l.local_addr().unwrap_or(a);
                let l = l
                    .set_nonblocking(true)
                    .and_then(|()| TcpListener::from_std(l))
                    .map_err(|e| format!("cannot serve --http {addr}: {e}"))?;
                return Ok((l, local));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) if e.kind() == std::io::ErrorKind::AddrInUse => format!(
            "cannot serve --http {addr}: the address is in use (another process listens there); choose another port"
        ),
        Some(e) => format!("cannot serve --http {addr}: {e}"),
        None => format!("--http {addr}: the name resolves to no address"),
    })
}

/// Serves until the runner ends.
pub async fn serve(listener: TcpListener, tx: mpsc::Sender<Incoming>, metrics: Metrics) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of fds, most likely: do not spin on the runner's only thread.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // Beyond the bound a connection is closed at once: the runner's fds stay its own.
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let (tx, metrics) = (tx.clone(), metrics.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (tx, metrics) = (tx.clone(), metrics.clone());
                async move { Ok::<_, Infallible>(answer(&req, &tx, &metrics).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(MAX_LIFE, conn).await;
            drop(permit);
        });
    }
}

/// The loop's status, or None if it does not answer in time.
async fn ask(tx: &mpsc::Sender<Incoming>) -> Option<Status> {
    let (reply, answer) = oneshot::channel();
    let incoming = Incoming {
        request: Request::Status,
        reply,
        stream: None,
    };
    tokio::time::timeout(LOOP_TIMEOUT, async {
        tx.send(incoming).await.ok()?;
        answer.await.ok()?.into_status().ok()
    })
    .await
    .ok()
    .flatten()
}

fn reply(code: StatusCode, kind: &str, body: String) -> HttpResponse<Full<Bytes>> {
    let mut r = HttpResponse::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    if let Ok(v) = kind.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

/// What `/readyz` says: ready when hotrun is not stopping and every instance is online.
pub fn readiness(status: &Status) -> (bool, serde_json::Value) {
    let not_ready = status.not_ready();
    let ready = status.is_ready();
    let body = serde_json::json!({
        "ready": ready,
        "stopping": status.stopping,
        "not_ready": not_ready,
    });
    (ready, body)
}

async fn answer<B>(
    req: &HttpRequest<B>,
    tx: &mpsc::Sender<Incoming>,
    metrics: &Metrics,
) -> HttpResponse<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "GET only\n".into());
    }
    let path = req.uri().path();
    if !matches!(path, "/livez" | "/readyz" | "/status" | "/metrics") {
        return reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found: /metrics, /livez, /readyz, /status\n".into(),
        );
    }
    let Some(status) = ask(tx).await else {
        let why = "hotrun's event loop does not answer\n".to_string();
        return reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, why);
    };
    match path {
        "/livez" => reply(StatusCode::OK, TEXT, "ok\n".into()),
        "/readyz" => {
            let (ready, body) = readiness(&status);
            let code = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(code, JSON, format!("{body}\n"))
        }
        "/status" => match serde_json::to_string_pretty(&status) {
            Ok(body) => reply(StatusCode::OK, JSON, body + "\n"),
            Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{e}\n")),
        },
        _ => reply(
            StatusCode::OK,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            metrics.encode(status),
        ),
    }
}
