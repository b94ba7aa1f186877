//! The runner's side of the control socket. Each connection is served by a small task
//! that reads one request line (bounded in size and time), checks that the peer is the
//! same user, hands the request to the event loop with a reply channel, and writes the
//! reply. A bad client gets an error line or is dropped; the runner is never harmed.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use super::protocol::{Request, Response, MAX_LINE};

/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A request for the event loop, with where to send the reply.
pub struct Incoming {
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
    /// For requests that stream (`hotrun logs --follow`): lines written after the reply
    /// until the client goes away.
    pub stream: Option<mpsc::Sender<String>>,
}

/// How many streamed lines may wait for a slow client; beyond, lines are dropped for it.
pub const STREAM_BACKLOG: usize = 1024;

/// Binds the control socket at `path`. A socket left by a hotrun that is gone is removed;
/// one a live hotrun answers on is an error.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "another hotrun is already running this ecosystem file (control socket {})",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Accepts connections until the listener fails; requests go to `tx`.
pub async fn serve(listener: UnixListener, tx: mpsc::Sender<Incoming>) {
    let uid = nix::unistd::getuid().as_raw();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of fds, most likely: do not spin on the runner's only thread.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let same_user = stream.peer_cred().map(|c| c.uid() == uid).unwrap_or(false);
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = handle(stream, same_user, tx).await;
        });
    }
}

/// Serves one connection: its request to the loop, the reply (and a streaming request's
/// lines) back.
async fn handle(stream: UnixStream, same_user: bool, tx: mpsc::Sender<Incoming>) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let request = match read_request(read, same_user).await? {
        Ok(request) => request,
        Err(refusal) => return reply(&mut write, refusal).await,
    };
    let (reply_tx, reply_rx) = oneshot::channel();
    // Streaming requests: lines after the response (logs, events), or before it (a
    // waiting reload's events).
    let reply_last = matches!(
        request,
        Request::Reload {
            wait: true,
            dry_run: false,
            ..
        }
    );
    let streams = reply_last
        || matches!(
            request,
            Request::Logs { follow: true, .. } | Request::Events
        );
    let (stream_tx, stream_rx) = streams.then(|| mpsc::channel(STREAM_BACKLOG)).unzip();
    if tx
        .send(Incoming {
            request,
            reply: reply_tx,
            stream: stream_tx,
        })
        .await
        .is_err()
    {
        return reply(&mut write, Response::err("hotrun is stopping")).await;
    }
    match (reply_last, stream_rx) {
        (true, Some(rx)) => lines_then_reply(&mut write, rx, reply_rx).await,
        (false, Some(rx)) => reply_then_lines(&mut write, rx, reply_rx).await,
        (_, None) => reply(&mut write, answered(reply_rx.await)).await,
    }
}

/// Reads the request line (bounded in size and time). `Err` is the refusal to send back:
/// a peer of another user, no line in time, a line too long, or not a request.
async fn read_request(
    read: OwnedReadHalf,
    same_user: bool,
) -> io::Result<Result<Request, Response>> {
    let mut reader = BufReader::new(read).take(MAX_LINE as u64 + 1);
    let mut line = Vec::new();
    let got = tokio::time::timeout(READ_TIMEOUT, reader.read_until(b'\n', &mut line)).await;
    if !same_user {
        // Read first, so that the refusal reaches a client that is still writing.
        return Ok(Err(Response::err(
            "refused: the control socket serves its own user only",
        )));
    }
    match got {
        Err(_) => return Ok(Err(Response::err("no request within 10 s"))),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(_)) => {}
    }
    if line.len() > MAX_LINE {
        return Ok(Err(Response::err(format!(
            "request longer than {MAX_LINE} bytes"
        ))));
    }
    Ok(serde_json::from_slice::<Request>(&line)
        .map_err(|e| Response::err(format!("not a request: {e}"))))
}

/// A waiting reload: its lines (events) as they come, then the response.
async fn lines_then_reply(
    write: &mut OwnedWriteHalf,
    mut rx: mpsc::Receiver<String>,
    mut reply_rx: oneshot::Receiver<Response>,
) -> io::Result<()> {
    loop {
        tokio::select! {
            Some(line) = rx.recv() => write.write_all(line.as_bytes()).await?,
            response = &mut reply_rx => {
                // Events emitted before the response are written first.
                while let Ok(line) = rx.try_recv() {
                    write.write_all(line.as_bytes()).await?;
                }
                return reply(write, answered(response)).await;
            }
        }
    }
}

/// A following request (logs, events): the response, then its lines until they end.
async fn reply_then_lines(
    write: &mut OwnedWriteHalf,
    mut rx: mpsc::Receiver<String>,
    reply_rx: oneshot::Receiver<Response>,
) -> io::Result<()> {
    write
        .write_all(&response_line(&answered(reply_rx.await)))
        .await?;
    while let Some(line) = rx.recv().await {
        write.write_all(line.as_bytes()).await?;
    }
    write.shutdown().await
}

/// The loop's response, or an error when the loop dropped the request unanswered.
fn answered(response: Result<Response, oneshot::error::RecvError>) -> Response {
    response.unwrap_or_else(|_| Response::err("hotrun stopped before answering"))
}

/// A response as its line on the socket.
fn response_line(response: &Response) -> Vec<u8> {
    let mut line = serde_json::to_vec(response).expect("a response serializes");
    line.push(b'\n');
    line
}

/// Writes the response line and shuts the writing side.
async fn reply(write: &mut OwnedWriteHalf, response: Response) -> io::Result<()> {
    write.write_all(&response_line(&response)).await?;
    write.shutdown().await
}

/// Removes the socket file when the runner ends.
pub struct SocketFile(pub PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
