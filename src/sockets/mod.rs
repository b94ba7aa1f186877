//! Listening sockets that hotrun owns. Each instance slot of an app accepts on a socket of
//! its own, all bound to the app's port with SO_REUSEPORT (see `reuseport`): the kernel
//! hands connections straight to the instances, spread over them (hotrun is not in the
//! data path), and a slot's socket stays open while its instance is replaced or
//! restarted: new connections wait in its backlog instead of being refused.

pub mod diag;
pub mod handle;
pub mod reuseport;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::str::FromStr;

use reuseport::{Group, Member};

use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrStorage,
};

/// Node's default backlog.
const BACKLOG: i32 = 511;

/// Where to listen: a port, on one address or on all of them.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
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

/// The sockets bound so far, for hotrun's whole life: per address, one per slot.
#[derive(Default)]
pub struct Listeners {
    groups: HashMap<ListenAddr, Group>,
}

impl Listeners {
    /// The socket of `member` for `addr`, bound now if it is not yet. The first socket of
    /// an address fails as a plain bind would when another process holds the port.
    pub fn get_or_bind(&mut self, addr: ListenAddr, member: &Member) -> io::Result<BorrowedFd<'_>> {
        if !self.groups.contains_key(&addr) {
            probe(addr)?;
        }
        let bound = match self.groups.get(&addr).and_then(|g| g.get(member)) {
            Some(_) => None,
            None => Some(bind_listener(addr)?),
        };
        let group = self.groups.entry(addr).or_default();
        if let Some(fd) = bound {
            group.add(member.clone(), fd);
        }
        Ok(group.get(member).expect("bound above"))
    }

    /// Makes sure `addr` is hotrun's: binds `first`'s socket when the address has none
    /// yet (failing as a plain bind would when another process holds the port), and binds
    /// nothing when it has (a reload's re-read of the file must not add a socket).
    pub fn claim(&mut self, addr: ListenAddr, first: &Member) -> io::Result<()> {
        if self.groups.contains_key(&addr) {
            return Ok(());
        }
        self.get_or_bind(addr, first).map(drop)
    }

    /// New connections to `addr` go to the sockets of `live` members only.
    pub fn set_live(&mut self, addr: &ListenAddr, live: &[Member]) -> io::Result<()> {
        match self.groups.get_mut(addr) {
            Some(g) => g.set_live(live),
            None => Ok(()),
        }
    }

    /// Where a probe of `member`'s socket of `addr` connects from, to reach that socket
    /// whatever the kernel's choice for other connections (see `reuseport::probe_source`).
    pub fn probe_source(&self, addr: &ListenAddr, member: &Member) -> Option<std::net::Ipv4Addr> {
        self.groups.get(addr)?.probe_source(member)
    }

    /// `member`'s socket of `addr`, if bound.
    pub fn socket(&self, addr: &ListenAddr, member: &Member) -> Option<BorrowedFd<'_>> {
        self.groups.get(addr)?.get(member)
    }

    /// The groups an upgrade's old hotrun held.
    pub fn adopt(groups: Vec<(ListenAddr, Vec<(Member, OwnedFd)>)>) -> Listeners {
        Listeners {
            groups: groups
                .into_iter()
                .map(|(addr, members)| (addr, Group::adopt(members)))
                .collect(),
        }
    }

    /// Every group's sockets, for an upgrade to hand on.
    pub fn saved(&self) -> Vec<(ListenAddr, Vec<(Member, std::os::fd::RawFd)>)> {
        self.groups.iter().map(|(a, g)| (*a, g.saved())).collect()
    }

    /// Every address with a socket.
    pub fn addresses(&self) -> Vec<ListenAddr> {
        self.groups.keys().copied().collect()
    }

    /// The members of `addr`'s group.
    pub fn members(&self, addr: &ListenAddr) -> Vec<Member> {
        self.groups
            .get(addr)
            .map(Group::members)
            .unwrap_or_default()
    }

    /// How many connections wait in `member`'s accept queue of `addr` (0 when it has no
    /// socket there).
    pub fn queued(&self, addr: &ListenAddr, member: &Member) -> io::Result<u32> {
        match self.groups.get(addr).and_then(|g| g.queued(member)) {
            Some(n) => n,
            None => Ok(0),
        }
    }

    /// Closes `member`'s socket of `addr`, new connections kept on `live` members' sockets
    /// while it closes (`Group::remove_steered`); the port itself is closed with its last
    /// socket, so that connections are refused rather than queued for nobody.
    pub fn release(
        &mut self,
        addr: &ListenAddr,
        member: &Member,
        live: &[Member],
    ) -> io::Result<()> {
        let Some(g) = self.groups.get_mut(addr) else {
            return Ok(());
        };
        let steered = g.remove_steered(member, live);
        if g.is_empty() {
            self.groups.remove(addr);
        }
        steered
    }
}

/// Fails with EADDRINUSE when another process listens on `addr` (with or without
/// SO_REUSEPORT): a plain bind, closed at once.
fn probe(addr: ListenAddr) -> io::Result<()> {
    bind_with(addr, false).map(drop)
}

/// Binds and listens, with SO_REUSEADDR (a restart of hotrun binds again at once) and
/// SO_REUSEPORT (a socket per slot on the same address).
pub fn bind_listener(addr: ListenAddr) -> io::Result<OwnedFd> {
    bind_with(addr, true)
}

fn bind_with(addr: ListenAddr, reuse_port: bool) -> io::Result<OwnedFd> {
    let one = |at: SocketAddr, dual_stack: bool| bind_one(at, dual_stack, reuse_port);
    match addr.host {
        Some(ip) => one(SocketAddr::new(ip, addr.port), false),
        // All addresses: one dual-stack IPv6 socket, or IPv4 only where IPv6 is off.
        None => one(
            SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), addr.port),
            true,
        )
        .or_else(|e| match e.raw_os_error() {
            Some(errno) if is_no_ipv6(errno) => one(
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

fn bind_one(addr: SocketAddr, dual_stack: bool, reuse_port: bool) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if reuse_port {
        setsockopt(&fd, sockopt::ReusePort, &true)?;
    }
    if dual_stack {
        setsockopt(&fd, sockopt::Ipv6V6Only, &false)?;
    }
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(addr),
    )?;
    if reuse_port {
        listen(&fd, Backlog::new(BACKLOG).unwrap_or(Backlog::MAXCONN))?;
    }
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

    fn local(port: u16) -> ListenAddr {
        ListenAddr {
            host: Some("127.0.0.1".parse().unwrap()),
            port,
        }
    }

    fn free_port() -> u16 {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    }

    #[test]
    fn a_bound_socket_accepts_and_another_process_cannot_take_the_port() {
        let port = free_port();
        let mut listeners = Listeners::default();
        let addr = local(port);
        let web0 = Member::new("web", 0);
        listeners.get_or_bind(addr, &web0).unwrap();
        // Same member again: the same socket, no second bind.
        listeners.get_or_bind(addr, &web0).unwrap();
        assert_eq!(listeners.groups[&addr].len(), 1);
        // A reload's claim of a port already held binds nothing, whichever lane serves.
        let web0_lane3 = Member::lane("web", 0, 3);
        listeners.get_or_bind(addr, &web0_lane3).unwrap();
        listeners.release(&addr, &web0, &[]).unwrap();
        listeners.claim(addr, &web0).unwrap();
        assert_eq!(listeners.members(&addr), vec![web0_lane3.clone()]);
        listeners.release(&addr, &web0_lane3, &[]).unwrap();
        listeners.claim(addr, &web0).unwrap();
        assert_eq!(listeners.members(&addr), vec![web0.clone()]);
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("backlog accepts");
        // A plain bind (as any other program does) fails.
        let err = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        // And a port held by someone else is refused, even to hotrun's reuse-port binds.
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = local(other.local_addr().unwrap().port());
        let err = Listeners::default().get_or_bind(taken, &web0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    /// Which of `listeners` (non-blocking) each of `n` connections reached.
    fn spread(port: u16, listeners: &[std::net::TcpListener], n: usize) -> Vec<usize> {
        let mut clients = Vec::new();
        for _ in 0..n {
            clients.push(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
        }
        let mut counts = vec![0; listeners.len()];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while counts.iter().sum::<usize>() < n && std::time::Instant::now() < deadline {
            for (i, l) in listeners.iter().enumerate() {
                while l.accept().is_ok() {
                    counts[i] += 1;
                }
            }
        }
        counts
    }

    #[test]
    fn connections_spread_over_the_slots_and_only_over_live_ones() {
        use std::os::fd::AsFd;
        let port = free_port();
        let addr = local(port);
        let mut listeners = Listeners::default();
        let members: Vec<Member> = (0..3).map(|s| Member::new("web", s)).collect();
        let sockets: Vec<std::net::TcpListener> = members
            .iter()
            .map(|m| {
                let fd = listeners
                    .get_or_bind(addr, m)
                    .unwrap()
                    .try_clone_to_owned()
                    .unwrap();
                let l = std::net::TcpListener::from(fd);
                l.set_nonblocking(true).unwrap();
                l
            })
            .collect();
        listeners.set_live(&addr, &members).unwrap();
        let all = spread(port, &sockets, 300);
        assert_eq!(all.iter().sum::<usize>(), 300, "{all:?}");
        assert!(all.iter().all(|&n| n >= 50), "an even spread: {all:?}");
        // Slot 1 is out (restarting): it gets nothing new.
        listeners
            .set_live(&addr, &[members[0].clone(), members[2].clone()])
            .unwrap();
        let two = spread(port, &sockets, 300);
        assert_eq!(two[1], 0, "{two:?}");
        assert!(two[0] >= 100 && two[2] >= 100, "{two:?}");
        // The program is the group's, so it holds whichever socket it went through.
        let _ = sockets[0].as_fd();
    }

    #[test]
    fn the_accept_queue_of_a_socket_is_counted() {
        let port = free_port();
        let addr = local(port);
        let mut listeners = Listeners::default();
        let (a, b) = (Member::new("web", 0), Member::lane("web", 0, 1));
        let sa = std::net::TcpListener::from(
            listeners
                .get_or_bind(addr, &a)
                .unwrap()
                .try_clone_to_owned()
                .unwrap(),
        );
        listeners.get_or_bind(addr, &b).unwrap();
        // Only `a` is picked: its queue holds every connection, `b`'s none.
        listeners.set_live(&addr, std::slice::from_ref(&a)).unwrap();
        let clients: Vec<_> = (0..5)
            .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        assert_eq!(listeners.queued(&addr, &a).unwrap(), 5);
        assert_eq!(listeners.queued(&addr, &b).unwrap(), 0);
        for _ in 0..5 {
            sa.accept().unwrap();
        }
        assert_eq!(listeners.queued(&addr, &a).unwrap(), 0);
        // A member without a socket here has nothing queued.
        assert_eq!(listeners.queued(&addr, &Member::new("api", 0)).unwrap(), 0);
        drop(clients);
    }
}
