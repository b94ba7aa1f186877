//! The client's side: send one request to the hotrun running an ecosystem file, read the
//! reply. Used by `hotrun reload|restart|stop|status`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::protocol::{Request, Response};
use crate::runtime_dir::RuntimeDir;

/// Why no reply came.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("hotrun is not running for {config} (no control socket at {socket})")]
    NotRunning { config: String, socket: String },
    #[error("cannot reach hotrun's control socket {socket}: {error}")]
    Connect {
        socket: String,
        error: std::io::Error,
    },
    #[error("lost the connection to hotrun: {0}")]
    Io(#[from] std::io::Error),
    #[error("hotrun answered something unexpected: {0}")]
    Garbled(String),
}

/// The answer to a request.
pub type Reply = Response;

/// Sends `request` to the hotrun that runs `config` and waits for its reply.
pub fn send(config: &Path, request: &Request) -> Result<Response, ClientError> {
    open(config, request).map(|(reply, _)| reply)
}

/// Sends `request` and returns the connection, for requests whose answer is a stream of
/// lines (a waiting reload's events, then its response).
pub fn stream(config: &Path, request: &Request) -> Result<BufReader<UnixStream>, ClientError> {
    stream_to(config, &RuntimeDir::of(config).control_socket(), request)
}

/// Sends `request` to the control socket at `socket` and waits for the reply (`hotrun ls`).
pub fn send_to(socket: &Path, request: &Request) -> Result<Response, ClientError> {
    let mut reader = stream_to(socket, socket, request)?;
    let mut answer = String::new();
    reader.read_line(&mut answer)?;
    serde_json::from_str(&answer).map_err(|_| ClientError::Garbled(answer.trim().to_string()))
}

fn stream_to(
    config: &Path,
    socket: &Path,
    request: &Request,
) -> Result<BufReader<UnixStream>, ClientError> {
    let mut stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ClientError::NotRunning {
                config: config.display().to_string(),
                socket: socket.display().to_string(),
            }
        }
        _ => ClientError::Connect {
            socket: socket.display().to_string(),
            error: e,
        },
    })?;
    let mut line = serde_json::to_vec(request).expect("a request serializes");
    line.push(b'\n');
    stream.write_all(&line)?;
    Ok(BufReader::new(stream))
}

/// Sends `request`; returns the reply and the connection, for requests that stream lines
/// after it (`hotrun logs --follow`).
pub fn open(
    config: &Path,
    request: &Request,
) -> Result<(Response, BufReader<UnixStream>), ClientError> {
    let mut reader = stream(config, request)?;
    let mut answer = String::new();
    reader.read_line(&mut answer)?;
    let reply = serde_json::from_str(&answer)
        .map_err(|_| ClientError::Garbled(answer.trim().to_string()))?;
    Ok((reply, reader))
}
