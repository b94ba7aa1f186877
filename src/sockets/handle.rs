//! Handing a listening socket to a Node instance over its IPC channel, the way a Node
//! parent does: the JSON line `{"cmd":"NODE_HANDLE","type":"net.Native","msg":...}` sent
//! with the fd attached (SCM_RIGHTS) in the same `sendmsg`. Node answers
//! `{"cmd":"NODE_HANDLE_ACK"}` and emits `process.on('message', (msg, handle))`.
//!
//! Node keeps the mode of a handle received this way, and libuv accepts until EAGAIN:
//! a blocking listening socket leaves an instance that lost the race for a connection
//! asleep in `accept4`, with the connections it already holds unserved. So the socket is
//! made non-blocking before it is sent (the mode belongs to the open file description,
//! which every instance then shares, as when Node opens an inherited fd itself).

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use serde_json::{json, Value};

/// Sends `msg` with the listening socket `fd`, in non-blocking mode, to the Node process
/// at the other end of `ipc`.
pub fn send_handle(ipc: &UnixStream, fd: BorrowedFd<'_>, msg: &Value) -> io::Result<()> {
    set_nonblocking(fd)?;
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

/// Sets O_NONBLOCK on the open file description of `fd`.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    if !flags.contains(OFlag::O_NONBLOCK) {
        fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::os::fd::{AsFd, FromRawFd};

    #[test]
    fn a_handed_socket_is_non_blocking_for_the_receiver() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let flags = |fd| OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL).unwrap());
        assert!(!flags(listener.as_fd()).contains(OFlag::O_NONBLOCK));
        let (ours, theirs) = UnixStream::pair().unwrap();
        send_handle(&ours, listener.as_fd(), &json!({"seq": 1})).unwrap();
        assert!(flags(listener.as_fd()).contains(OFlag::O_NONBLOCK));
        // The receiver's fd shares the description, so it is non-blocking too.
        let mut buf = [0u8; 256];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = nix::sys::socket::recvmsg::<()>(
            theirs.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .unwrap();
        let received = msg
            .cmsgs()
            .unwrap()
            .find_map(|c| match c {
                nix::sys::socket::ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                _ => None,
            })
            .expect("an fd came with the message");
        let received = unsafe { std::os::fd::OwnedFd::from_raw_fd(received) };
        assert!(flags(received.as_fd()).contains(OFlag::O_NONBLOCK));
    }
}
