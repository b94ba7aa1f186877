//! The runner's side of the control socket. Each connection is served by a small task
//! that reads one request line (bounded in size and time), checks that the peer is the
//! same user, hands the request to the event loop with a reply channel, and writes the
//! reply. A bad client gets an error line or is dropped; the runner is never harmed.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
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

async fn handle(stream: UnixStream, same_user: bool, tx: mpsc::Sender<Incoming>) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read).take(MAX_LINE as u64 + 1);
    let mut line = Vec::new();
    let got = tokio::time::timeout(READ_TIMEOUT, reader.read_until(b'\n', &mut line)).await;
    if !same_user {
        // Read first, so that the refusal reaches a client that is still writing.
        return reply(
            &mut write,
            Response::err("refused: the control socket serves its own user only"),
        )
        .await;
    }
    match got {
        Err(_) => return reply(&mut write, Response::err("no request within 10 s")).await,
        Ok(Err(e)) => return Err(e),
        Ok(Ok(_)) => {}
    }
    if line.len() > MAX_LINE {
        return reply(
            &mut write,
            Response::err(format!("request longer than {MAX_LINE} bytes")),
        )
        .await;
    }
    let request = match serde_json::from_slice::<Request>(&line) {
        Ok(r) => r,
        Err(e) => {
            return reply(&mut write, Response::err(format!("not a request: {e}"))).await;
        }
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
    let (stream_tx, mut stream_rx) = match &request {
        Request::Logs { follow: true, .. } | Request::Events => {
            let (t, r) = mpsc::channel(STREAM_BACKLOG);
            (Some(t), Some(r))
        }
        _ if reply_last => {
            let (t, r) = mpsc::channel(STREAM_BACKLOG);
            (Some(t), Some(r))
        }
        _ => (None, None),
    };
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
    if let (true, Some(rx)) = (reply_last, stream_rx.as_mut()) {
        let mut reply_rx = reply_rx;
        loop {
            tokio::select! {
                Some(line) = rx.recv() => write.write_all(line.as_bytes()).await?,
                response = &mut reply_rx => {
                    // Events emitted before the response are written first.
                    while let Ok(line) = rx.try_recv() {
                        write.write_all(line.as_bytes()).await?;
                    }
                    let response = response
                        .unwrap_or_else(|_| Response::err("hotrun stopped before answering"));
                    return reply(&mut write, response).await;
                }
            }
        }
    }
    if let Some(rx) = stream_rx.as_mut() {
        let response = reply_rx
            .await
            .unwrap_or_else(|_| Response::err("hotrun stopped before answering"));
        let mut first = serde_json::to_vec(&response).expect("a response serializes");
        first.push(b'\n');
        write.write_all(&first).await?;
        while let Some(line) = rx.recv().await {
            write.write_all(line.as_bytes()).await?;
        }
        return write.shutdown().await;
    }
    let response = reply_rx
        .await
        .unwrap_or_else(|_| Response::err("hotrun stopped before answering"));
    reply(&mut write, response).await
}

async fn reply(write: &mut tokio::net::unix::OwnedWriteHalf, response: Response) -> io::Result<()> {
    let mut line = serde_json::to_vec(&response).expect("a response serializes");
    line.push(b'\n');
    write.write_all(&line).await?;
    write.shutdown().await
}

/// Removes the socket file when the runner ends.
pub struct SocketFile(pub PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
