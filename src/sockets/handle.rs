//! Handing a listening socket to a Node instance over its IPC channel, the way a Node
//! parent does: the JSON line `{"cmd":"NODE_HANDLE","type":"net.Native","msg":...}` sent
//! with the fd attached (SCM_RIGHTS) in the same `sendmsg`. Node answers
//! `{"cmd":"NODE_HANDLE_ACK"}` and emits `process.on('message', (msg, handle))`.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use serde_json::{json, Value};

/// Sends `msg` with the socket `fd` to the Node process at the other end of `ipc`.
pub fn send_handle(ipc: &UnixStream, fd: BorrowedFd<'_>, msg: &Value) -> io::Result<()> {
    let line = format!(
        "{}\n",
        json!({"cmd": "NODE_HANDLE", "type": "net.Native", "msg": msg})
    );
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(line.as_bytes())];
    let sent = loop {
        match sendmsg::<()>(ipc.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other?,
        }
    };
    if sent == line.len() {
        return Ok(());
    }
    // The fd went with the first bytes; the rest of the line follows without it.
    send_all(ipc, &line.as_bytes()[sent..])
}

/// Sends one JSON message (a line) to the instance.
pub fn send_message(ipc: &UnixStream, msg: &Value) -> io::Result<()> {
    send_all(ipc, format!("{msg}\n").as_bytes())
}

fn send_all(ipc: &UnixStream, mut bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    // The channel is non-blocking; a full channel (an instance that never reads it)
    // is reported to the caller rather than waited on.
    let mut w = ipc;
    while !bytes.is_empty() {
        match w.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
