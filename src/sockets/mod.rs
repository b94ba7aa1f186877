//! Listening sockets that hotrun owns. Every instance of an app accepts on the same socket,
//! so the kernel hands connections straight to the instances (hotrun is not in the data
//! path), and the socket stays open while instances are replaced: new connections wait
//! in the backlog instead of being refused.

pub mod handle;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::str::FromStr;

use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrStorage,
};

/// Node's default backlog.
const BACKLOG: i32 = 511;

/// Where to listen: a port, on one address or on all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenAddr {
    /// `None`: every address, IPv6 and IPv4 (as Node's `listen(port)`).
    pub host: Option<IpAddr>,
    pub port: u16,
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host {
            None => write!(f, "{}", self.port),
            Some(ip) => write!(f, "{}", SocketAddr::new(ip, self.port)),
        }
    }
}

impl FromStr for ListenAddr {
    type Err = String;

    /// `8080`, `:8080`, `127.0.0.1:8080`, `[::1]:8080`, `0.0.0.0:8080`.
    fn from_str(s: &str) -> Result<ListenAddr, String> {
        let s = s.trim();
        let port_only = s.strip_prefix(':').unwrap_or(s);
        if let Ok(port) = port_only.parse::<u16>() {
            return Ok(ListenAddr { host: None, port });
        }
        match s.parse::<SocketAddr>() {
            Ok(addr) => Ok(ListenAddr {
                host: Some(addr.ip()),
                port: addr.port(),
            }),
            Err(_) => Err(format!(
                "{s:?} is not a port or address:port (e.g. \"8080\", \"127.0.0.1:8080\", \"[::1]:8080\")"
            )),
        }
    }
}

/// The sockets bound so far, for hotrun's whole life.
#[derive(Default)]
pub struct Listeners {
    bound: HashMap<ListenAddr, OwnedFd>,
}

impl Listeners {
    /// The socket for `addr`, bound now if it is not yet.
    pub fn get_or_bind(&mut self, addr: ListenAddr) -> io::Result<BorrowedFd<'_>> {
        let fd: &OwnedFd = match self.bound.entry(addr) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(bind_listener(addr)?),
        };
        Ok(fd.as_fd())
    }

    /// An already bound socket.
    pub fn get(&self, addr: &ListenAddr) -> Option<BorrowedFd<'_>> {
        self.bound.get(addr).map(|fd| fd.as_fd())
    }
}

/// Binds and listens, with SO_REUSEADDR (a restart of hotrun binds again at once).
pub fn bind_listener(addr: ListenAddr) -> io::Result<OwnedFd> {
    match addr.host {
        Some(ip) => bind_one(SocketAddr::new(ip, addr.port), false),
        // All addresses: one dual-stack IPv6 socket, or IPv4 only where IPv6 is off.
        None => bind_one(
            SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), addr.port),
            true,
        )
        .or_else(|e| match e.raw_os_error() {
            Some(libc_eafnosupport) if is_no_ipv6(libc_eafnosupport) => bind_one(
                SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), addr.port),
                false,
            ),
            _ => Err(e),
        }),
    }
}

fn is_no_ipv6(errno: i32) -> bool {
    use nix::errno::Errno;
    [Errno::EAFNOSUPPORT as i32, Errno::EADDRNOTAVAIL as i32].contains(&errno)
}

fn bind_one(addr: SocketAddr, dual_stack: bool) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if dual_stack {
        setsockopt(&fd, sockopt::Ipv6V6Only, &false)?;
    }
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(addr),
    )?;
    listen(&fd, Backlog::new(BACKLOG).unwrap_or(Backlog::MAXCONN))?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_parse() {
        let any = |port| ListenAddr { host: None, port };
        let at = |ip: &str, port| ListenAddr {
            host: Some(ip.parse().unwrap()),
            port,
        };
        let table = [
            ("8080", Ok(any(8080))),
            (":8080", Ok(any(8080))),
            ("127.0.0.1:9090", Ok(at("127.0.0.1", 9090))),
            ("[::1]:80", Ok(at("::1", 80))),
        ];
        for (text, want) in table {
            assert_eq!(text.parse::<ListenAddr>(), want, "{text}");
        }
        for bad in ["", "http", "99999", "localhost:80", "1.2.3.4"] {
            assert!(bad.parse::<ListenAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bound_socket_accepts_and_a_second_bind_of_the_port_fails() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let mut listeners = Listeners::default();
        let addr = ListenAddr {
            host: Some("127.0.0.1".parse().unwrap()),
            port,
        };
        listeners.get_or_bind(addr).unwrap();
        // Same address again: the same socket, no second bind.
        listeners.get_or_bind(addr).unwrap();
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("backlog accepts");
        let err = bind_listener(addr).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
