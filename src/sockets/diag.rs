//! Which accepted connections have not had their request read yet, asked of the kernel
//! (NETLINK_SOCK_DIAG, as `ss` does): a drained instance is asked to stop as soon as
//! every connection it accepted has had its first bytes read (an app that closes idle
//! connections on its stop signal, as Node's `server.close()` does, would reset one that
//! had not), rather than after a fixed `drain_delay`, which stays the upper bound.
//!
//! The kernel reports every TCP connection of the port: those in an accept queue or half
//! open belong to no process yet (inode 0), so while any exists nothing is settled; the
//! others are matched to an instance through the socket inodes under /proc/PID/fd.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::libc;
use nix::sys::socket::{
    recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag,
    SockProtocol, SockType,
};
use nix::sys::time::TimeVal;

/// TCP states, as the kernel numbers them.
const ESTABLISHED: u8 = 1;
const SYN_RECV: u8 = 3;
const CLOSE_WAIT: u8 = 8;
const NEW_SYN_RECV: u8 = 12;

/// One TCP connection as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conn {
    pub state: u8,
    pub local_port: u16,
    /// 0 while no process holds it (in an accept queue, or half open).
    pub inode: u64,
    /// Bytes received and not read by the app yet.
    pub unread: u32,
    /// Bytes received in all (`tcpi_bytes_received`), when the kernel says.
    pub received: Option<u64>,
}

/// Whether the connections of some ports still wait for their request to be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// Every accepted connection has had bytes read, and none is queued or half open.
    Nothing,
    /// A connection no process holds yet: whose it will be is not known.
    Unowned,
    /// These connections (socket inodes) have not had their request read.
    Held(HashSet<u64>),
}

/// What `conns` say of `ports` (pure: see the tests).
pub fn waiting(conns: &[Conn], ports: &[u16]) -> Waiting {
    let mut held = HashSet::new();
    for c in conns.iter().filter(|c| ports.contains(&c.local_port)) {
        match c.state {
            SYN_RECV | NEW_SYN_RECV => return Waiting::Unowned,
            ESTABLISHED | CLOSE_WAIT if c.inode == 0 => return Waiting::Unowned,
            ESTABLISHED | CLOSE_WAIT => {
                let nothing_yet = c.state == ESTABLISHED && c.received.unwrap_or(0) == 0;
                if c.unread > 0 || nothing_yet {
                    held.insert(c.inode);
                }
            }
            _ => {}
        }
    }
    if held.is_empty() {
        Waiting::Nothing
    } else {
        Waiting::Held(held)
    }
}

/// Whether any of the processes `pids` lists holds a connection of `ports` whose request
/// it has not read yet (or it cannot be told: then `true`, and the caller waits its
/// `drain_delay`). `pids` is only called when some connection of the ports waits.
pub fn requests_pending(pids: impl FnOnce() -> Vec<i32>, ports: &[u16]) -> bool {
    let conns = match tcp_connections() {
        Ok(c) => c,
        Err(_) => return true,
    };
    match waiting(&conns, ports) {
        Waiting::Nothing => false,
        Waiting::Unowned => true,
        Waiting::Held(inodes) => pids()
            .iter()
            .any(|&pid| socket_inodes(pid).iter().any(|i| inodes.contains(i))),
    }
}

/// The socket inodes process `pid` holds (none when it is gone).
pub fn socket_inodes(pid: i32) -> Vec<u64> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_str()?;
            l.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// Every TCP connection (IPv4 and IPv6) in the states `waiting` looks at.
pub fn tcp_connections() -> io::Result<Vec<Conn>> {
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    // A dump is answered at once; never let a kernel that does not answer hold the loop.
    setsockopt(&sock, sockopt::ReceiveTimeout, &TimeVal::new(0, 200_000))?;
    let mut conns = Vec::new();
    for (seq, family) in [(1, libc::AF_INET), (2, libc::AF_INET6)] {
        sendto(
            sock.as_raw_fd(),
            &request(family as u8, seq),
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )?;
        read_dump(&sock, seq, &mut conns)?;
    }
    Ok(conns)
}

const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const INET_DIAG_INFO: u16 = 2;
/// `struct inet_diag_msg`: family, state, timer, retrans, the 48-byte id, expires,
/// rqueue, wqueue, uid, inode.
const DIAG_MSG: usize = 72;
/// Where `tcpi_bytes_received` sits in `struct tcp_info`.
const TCPI_BYTES_RECEIVED: usize = 128;

/// A dump request (`struct nlmsghdr` + `struct inet_diag_req_v2`) for TCP sockets of
/// `family` in the states `waiting` reads, with their `tcp_info`.
fn request(family: u8, seq: u32) -> Vec<u8> {
    let states: u32 = [ESTABLISHED, SYN_RECV, CLOSE_WAIT, NEW_SYN_RECV]
        .iter()
        .fold(0, |m, s| m | 1 << s);
    let len = NLMSG_HDR + 56;
    let mut b = Vec::with_capacity(len);
    b.extend((len as u32).to_ne_bytes());
    b.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    b.extend(((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    b.extend(seq.to_ne_bytes());
    b.extend(0u32.to_ne_bytes());
    b.push(family);
    b.push(libc::IPPROTO_TCP as u8);
    b.push(1 << (INET_DIAG_INFO - 1));
    b.push(0);
    b.extend(states.to_ne_bytes());
    b.resize(len, 0); // the socket id: any
    b
}

/// Reads the answers to request `seq` until its end.
fn read_dump(sock: &OwnedFd, seq: u32, out: &mut Vec<Conn>) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "sock_diag closed",
            ));
        }
        if parse(&buf[..n], seq, out)? {
            return Ok(());
        }
    }
}

/// Parses one datagram of netlink messages into `out`; true at the dump's end.
fn parse(mut buf: &[u8], seq: u32, out: &mut Vec<Conn>) -> io::Result<bool> {
    let u16_at = |b: &[u8], i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
    let u32_at = |b: &[u8], i: usize| u32::from_ne_bytes(b[i..i + 4].try_into().unwrap());
    while buf.len() >= NLMSG_HDR {
        let len = u32_at(buf, 0) as usize;
        if len < NLMSG_HDR || len > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "sock_diag: bad message length",
            ));
        }
        let (kind, msg_seq) = (u16_at(buf, 4), u32_at(buf, 8));
        let body = &buf[NLMSG_HDR..len];
        if msg_seq == seq {
            match kind {
                NLMSG_DONE => return Ok(true),
                NLMSG_ERROR => {
                    let errno = body
                        .get(..4)
                        .map_or(0, |b| i32::from_ne_bytes(b.try_into().unwrap()));
                    return Err(io::Error::from_raw_os_error(-errno));
                }
                SOCK_DIAG_BY_FAMILY if body.len() >= DIAG_MSG => out.push(conn(body)),
                _ => {}
            }
        }
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    Ok(false)
}

/// One `inet_diag_msg` and its attributes.
fn conn(m: &[u8]) -> Conn {
    let u32_at = |i: usize| u32::from_ne_bytes(m[i..i + 4].try_into().unwrap());
    let mut received = None;
    let mut attrs = &m[DIAG_MSG..];
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            break;
        }
        let payload = &attrs[4..len];
        if kind == INET_DIAG_INFO && payload.len() >= TCPI_BYTES_RECEIVED + 8 {
            let b = &payload[TCPI_BYTES_RECEIVED..TCPI_BYTES_RECEIVED + 8];
            received = Some(u64::from_ne_bytes(b.try_into().unwrap()));
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    Conn {
        state: m[1],
        // The id starts at 4 with the source port, in network order.
        local_port: u16::from_be_bytes([m[4], m[5]]),
        inode: u64::from(u32_at(68)),
        unread: u32_at(56),
        received,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(state: u8, port: u16, inode: u64, unread: u32, received: Option<u64>) -> Conn {
        Conn {
            state,
            local_port: port,
            inode,
            unread,
            received,
        }
    }

    #[test]
    fn what_the_connections_of_a_port_say() {
        let held = |v: &[u64]| Waiting::Held(v.iter().copied().collect());
        let table: Vec<(&str, Vec<Conn>, Waiting)> = vec![
            ("no connection", vec![], Waiting::Nothing),
            (
                "every connection read (keep-alive between requests)",
                vec![
                    c(ESTABLISHED, 80, 7, 0, Some(78)),
                    c(CLOSE_WAIT, 80, 8, 0, Some(90)),
                ],
                Waiting::Nothing,
            ),
            (
                "other ports do not count",
                vec![
                    c(SYN_RECV, 81, 0, 0, None),
                    c(ESTABLISHED, 81, 9, 0, Some(0)),
                ],
                Waiting::Nothing,
            ),
            (
                "a half-open connection",
                vec![c(SYN_RECV, 80, 0, 0, None)],
                Waiting::Unowned,
            ),
            (
                "a request socket",
                vec![c(NEW_SYN_RECV, 80, 0, 0, None)],
                Waiting::Unowned,
            ),
            (
                "a connection in an accept queue",
                vec![
                    c(ESTABLISHED, 80, 7, 0, Some(5)),
                    c(ESTABLISHED, 80, 0, 0, Some(0)),
                ],
                Waiting::Unowned,
            ),
            (
                "accepted, nothing sent yet",
                vec![
                    c(ESTABLISHED, 80, 7, 0, Some(0)),
                    c(ESTABLISHED, 80, 8, 0, Some(3)),
                ],
                held(&[7]),
            ),
            (
                "a request received, not read",
                vec![
                    c(ESTABLISHED, 80, 7, 65, Some(65)),
                    c(CLOSE_WAIT, 80, 8, 12, Some(12)),
                ],
                held(&[7, 8]),
            ),
            (
                "no tcp_info: nothing known to be received",
                vec![c(ESTABLISHED, 80, 7, 0, None)],
                held(&[7]),
            ),
            (
                "a client that closed before sending is not waited for",
                vec![c(CLOSE_WAIT, 80, 7, 0, Some(0))],
                Waiting::Nothing,
            ),
        ];
        for (name, conns, want) in table {
            assert_eq!(waiting(&conns, &[80, 443]), want, "{name}");
        }
    }

    /// A datagram as the kernel writes it: two messages, then the end of the dump.
    #[test]
    fn a_dump_is_parsed() {
        fn msg(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
            let mut m = ((NLMSG_HDR + body.len()) as u32).to_ne_bytes().to_vec();
            m.extend(kind.to_ne_bytes());
            m.extend(2u16.to_ne_bytes());
            m.extend(seq.to_ne_bytes());
            m.extend(0u32.to_ne_bytes());
            m.extend(body);
            m.resize(m.len().next_multiple_of(4), 0);
            m
        }
        fn diag(state: u8, port: u16, unread: u32, inode: u32, info: Option<u64>) -> Vec<u8> {
            let mut b = vec![0u8; DIAG_MSG];
            b[0] = libc::AF_INET6 as u8;
            b[1] = state;
            b[4..6].copy_from_slice(&port.to_be_bytes());
            b[56..60].copy_from_slice(&unread.to_ne_bytes());
            b[68..72].copy_from_slice(&inode.to_ne_bytes());
            if let Some(r) = info {
                let mut tcp_info = vec![0u8; 232];
                tcp_info[TCPI_BYTES_RECEIVED..TCPI_BYTES_RECEIVED + 8]
                    .copy_from_slice(&r.to_ne_bytes());
                b.extend(((4 + tcp_info.len()) as u16).to_ne_bytes());
                b.extend(INET_DIAG_INFO.to_ne_bytes());
                b.extend(tcp_info);
            }
            b
        }
        let mut dgram = msg(
            SOCK_DIAG_BY_FAMILY,
            5,
            &diag(ESTABLISHED, 3000, 65, 4242, Some(65)),
        );
        dgram.extend(msg(
            SOCK_DIAG_BY_FAMILY,
            5,
            &diag(SYN_RECV, 3000, 0, 0, None),
        ));
        dgram.extend(msg(
            SOCK_DIAG_BY_FAMILY,
            4,
            &diag(ESTABLISHED, 1, 0, 1, None),
        ));
        let mut out = Vec::new();
        assert!(!parse(&dgram, 5, &mut out).unwrap());
        assert_eq!(
            out,
            vec![
                c(ESTABLISHED, 3000, 4242, 65, Some(65)),
                c(SYN_RECV, 3000, 0, 0, None)
            ]
        );
        assert!(parse(&msg(NLMSG_DONE, 5, &[0; 4]), 5, &mut out).unwrap());
        let err = parse(
            &msg(NLMSG_ERROR, 5, &(-libc::EPERM).to_ne_bytes()),
            5,
            &mut out,
        );
        assert_eq!(err.unwrap_err().raw_os_error(), Some(libc::EPERM));
    }

    /// The kernel is asked for real: a connection this test accepted and did not read is
    /// waited for, and no longer once read.
    #[test]
    fn the_kernel_reports_an_unread_request() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let me = std::process::id() as i32;
        let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (mut accepted, _) = listener.accept().unwrap();
        assert!(
            requests_pending(|| vec![me], &[port]),
            "accepted, nothing sent yet"
        );
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while tcp_connections()
            .unwrap()
            .iter()
            .all(|c| c.local_port != port || c.unread == 0)
        {
            assert!(
                std::time::Instant::now() < until,
                "the request never showed"
            );
        }
        assert!(requests_pending(|| vec![me], &[port]), "received, not read");
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let not_holder = requests_pending(|| vec![other.id() as i32], &[port]);
        let _ = other.kill();
        let _ = other.wait();
        assert!(!not_holder, "a process that does not hold it");
        let mut buf = [0u8; 64];
        let n = accepted.read(&mut buf).unwrap();
        assert_eq!(n, 18);
        assert!(!requests_pending(|| vec![me], &[port]), "read");
    }
}
