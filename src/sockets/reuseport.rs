//! One listening socket per instance, all bound to the same address with SO_REUSEPORT:
//! the kernel spreads new connections over them, so every instance gets its share (Node
//! accepts greedily from a shared socket, and one instance would take most). A classic BPF
//! program (SO_ATTACH_REUSEPORT_CBPF, no privilege needed) picks only among the sockets of
//! instances that are online. A slot being restarted keeps its socket, so the connections
//! queued on it wait for its replacement instead of being reset; a reload's successor gets
//! a socket of its own (a new lane of the slot), so the old instance can be taken out of
//! the program and drained before it is asked to stop.
//!
//! The kernel knows a socket by its index in the group: its order of joining (`listen`),
//! and when one leaves, the last moves into its place. `Members` keeps that model.
//!
//! hotrun's probes reach one instance for sure: a connection from 127.77.H.L goes to the
//! socket of index H * 256 + L, whatever the live set (`probe_source`).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::libc;
use nix::sys::socket::{setsockopt, sockopt};

/// Who a socket of the group is for: an app's slot, and which of the slot's sockets
/// (`lane`: 0 at first, a new one for each reload's successor).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Member {
    pub app: String,
    pub slot: u32,
    pub lane: u64,
}

impl Member {
    /// The slot's first socket.
    pub fn new(app: &str, slot: u32) -> Member {
        Member::lane(app, slot, 0)
    }

    pub fn lane(app: &str, slot: u32, lane: u64) -> Member {
        Member {
            app: app.to_string(),
            slot,
            lane,
        }
    }
}

/// The kernel's order of the group's sockets.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Members {
    order: Vec<Member>,
}

impl Members {
    /// A socket joined (it listens now): it takes the next index.
    pub fn join(&mut self, m: Member) -> usize {
        self.order.push(m);
        self.order.len() - 1
    }

    /// A socket left (closed): the last one takes its index.
    pub fn leave(&mut self, m: &Member) {
        if let Some(i) = self.index_of(m) {
            self.order.swap_remove(i);
        }
    }

    pub fn index_of(&self, m: &Member) -> Option<usize> {
        self.order.iter().position(|x| x == m)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// What the program may pick while `gone` leaves: the live members whose index its
    /// leaving does not move (neither its own nor the last's, which takes its place). A
    /// connection the kernel steers in that moment must not land on an index that, once
    /// `gone` is closed, names another socket or none (out of range, the kernel picks by
    /// hash among every socket, draining ones too). When every live member would move,
    /// the plain `pickable`.
    pub fn pickable_while_leaving(&self, gone: &Member, live: &[Member]) -> Vec<u32> {
        let Some(at) = self.index_of(gone) else {
            return self.pickable(live);
        };
        let last = self.order.len() - 1;
        let steady: Vec<u32> = (0..self.order.len())
            .filter(|&i| i != at && i != last && live.contains(&self.order[i]))
            .map(|i| i as u32)
            .collect();
        if steady.is_empty() {
            self.pickable(live)
        } else {
            steady
        }
    }

    /// The indices the program may pick: those of `live` members, in index order; every
    /// index when none is live (connections then wait in whichever queue until an
    /// instance is up, as with one shared socket).
    pub fn pickable(&self, live: &[Member]) -> Vec<u32> {
        let chosen: Vec<u32> = (0..self.order.len())
            .filter(|&i| live.contains(&self.order[i]))
            .map(|i| i as u32)
            .collect();
        if chosen.is_empty() {
            (0..self.order.len() as u32).collect()
        } else {
            chosen
        }
    }
}

/// At most this many sockets are picked among (the program has 2 instructions each).
const MOST_PICKED: usize = 1000;

/// The first two bytes of the IPv4 loopback addresses hotrun's probes connect from.
const PROBE_NET: u32 = 0x7f4d_0000; // 127.77.0.0/16

/// The source address of a probe of the socket of index `index`: 127.77.H.L.
pub fn probe_source(index: usize) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(PROBE_NET | (index as u32 & 0xffff))
}

fn op(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// The program's start: an IPv4 connection from 127.77.H.L returns index H * 256 + L.
fn probe_steering() -> Vec<libc::sock_filter> {
    use libc::{BPF_A, BPF_ABS, BPF_ALU, BPF_AND, BPF_H, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD};
    use libc::{BPF_MISC, BPF_RET, BPF_TAX, BPF_TXA, BPF_W};
    const ETH_P_IP: u32 = 0x0800;
    vec![
        // A = the packet's protocol; not IPv4: on to the spread (7 ahead).
        op(
            BPF_LD | BPF_H | BPF_ABS,
            0,
            0,
            (libc::SKF_AD_OFF + libc::SKF_AD_PROTOCOL) as u32,
        ),
        op(BPF_JMP | BPF_JEQ | BPF_K, 0, 7, ETH_P_IP),
        // A = X = the source address; not 127.77/16: on to the spread (3 ahead).
        op(
            BPF_LD | BPF_W | BPF_ABS,
            0,
            0,
            (libc::SKF_NET_OFF + 12) as u32,
        ),
        op(BPF_MISC | BPF_TAX, 0, 0, 0),
        op(BPF_ALU | BPF_AND | BPF_K, 0, 0, 0xffff_0000),
        op(BPF_JMP | BPF_JEQ | BPF_K, 0, 3, PROBE_NET),
        // return its low 16 bits
        op(BPF_MISC | BPF_TXA, 0, 0, 0),
        op(BPF_ALU | BPF_AND | BPF_K, 0, 0, 0xffff),
        op(BPF_RET | BPF_A, 0, 0, 0),
    ]
}

/// A classic BPF program that sends probes to their socket (`probe_steering`) and returns
/// one of `indices` at random for every other new connection.
pub fn program(indices: &[u32]) -> Vec<libc::sock_filter> {
    let indices = &indices[..indices.len().min(MOST_PICKED)];
    let mut prog = probe_steering();
    let Some((&last, rest)) = indices.split_last() else {
        prog.push(op(libc::BPF_RET | libc::BPF_K, 0, 0, 0));
        return prog;
    };
    prog.extend([
        // A = a random u32; A %= n
        op(
            libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
            0,
            0,
            (libc::SKF_AD_OFF + libc::SKF_AD_RANDOM) as u32,
        ),
        op(
            libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K,
            0,
            0,
            indices.len() as u32,
        ),
    ]);
    // if A == j return indices[j]
    for (j, &index) in rest.iter().enumerate() {
        prog.push(op(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            0,
            1,
            j as u32,
        ));
        prog.push(op(libc::BPF_RET | libc::BPF_K, 0, 0, index));
    }
    prog.push(op(libc::BPF_RET | libc::BPF_K, 0, 0, last));
    prog
}

/// Runs `program` as the kernel would (for tests): the index it picks for a connection of
/// `protocol` (0x0800: IPv4) from `source` when the random number is `random`.
#[cfg(test)]
fn run(prog: &[libc::sock_filter], protocol: u16, source: u32, random: u32) -> u32 {
    use libc::*;
    let (mut a, mut x) = (0u32, 0u32);
    let mut pc = 0usize;
    loop {
        let i = prog[pc];
        let code = u32::from(i.code);
        pc += 1;
        let k = i.k as i32;
        match code {
            c if c == BPF_LD | BPF_H | BPF_ABS && k == SKF_AD_OFF + SKF_AD_PROTOCOL => {
                a = u32::from(protocol)
            }
            c if c == BPF_LD | BPF_W | BPF_ABS && k == SKF_NET_OFF + 12 => a = source,
            c if c == BPF_LD | BPF_W | BPF_ABS && k == SKF_AD_OFF + SKF_AD_RANDOM => a = random,
            c if c == BPF_ALU | BPF_MOD | BPF_K => a %= i.k,
            c if c == BPF_ALU | BPF_AND | BPF_K => a &= i.k,
            c if c == BPF_MISC | BPF_TAX => x = a,
            c if c == BPF_MISC | BPF_TXA => a = x,
            c if c == BPF_JMP | BPF_JEQ | BPF_K => {
                pc += usize::from(if a == i.k { i.jt } else { i.jf })
            }
            c if c == BPF_RET | BPF_K => return i.k,
            c if c == BPF_RET | BPF_A => return a,
            _ => panic!("unexpected instruction {code:#x} k {k}"),
        }
    }
}

/// The sockets of one address, one per member, and the program attached to them.
pub struct Group {
    members: Members,
    fds: HashMap<Member, OwnedFd>,
    /// What the attached program picks among, once attached.
    attached: Option<Vec<u32>>,
}

impl Group {
    pub fn new() -> Group {
        Group {
            members: Members::default(),
            fds: HashMap::new(),
            attached: None,
        }
    }

    pub fn get(&self, m: &Member) -> Option<BorrowedFd<'_>> {
        self.fds.get(m).map(|fd| fd.as_fd())
    }

    /// The group an upgrade's old hotrun held: its sockets in the kernel's order. The
    /// program attached to them stays the kernel's; it is set again at the next change.
    pub fn adopt(members: Vec<(Member, OwnedFd)>) -> Group {
        let mut g = Group::new();
        for (m, fd) in members {
            g.add(m, fd);
        }
        g
    }

    /// Every member with its socket's descriptor, in the kernel's order.
    pub fn saved(&self) -> Vec<(Member, std::os::fd::RawFd)> {
        use std::os::fd::AsRawFd;
        self.members
            .order
            .iter()
            .filter_map(|m| self.fds.get(m).map(|fd| (m.clone(), fd.as_raw_fd())))
            .collect()
    }

    /// Adds the socket `fd` (bound with SO_REUSEPORT, listening) for `m`.
    pub fn add(&mut self, m: Member, fd: OwnedFd) {
        self.members.join(m.clone());
        self.fds.insert(m, fd);
    }

    /// Closes the socket of `m`: what is queued on it is reset (refused, not left to hang),
    /// and the last socket takes its index.
    pub fn remove(&mut self, m: &Member) {
        if self.fds.remove(m).is_some() {
            self.members.leave(m);
            self.attached = None;
        }
    }

    /// Where a probe of `m`'s socket connects from (its index in the kernel's order).
    pub fn probe_source(&self, m: &Member) -> Option<std::net::Ipv4Addr> {
        self.members.index_of(m).map(probe_source)
    }

    /// Every member, in the kernel's order.
    pub fn members(&self) -> Vec<Member> {
        self.members.order.clone()
    }

    /// Points new connections at the sockets of the `live` members only.
    pub fn set_live(&mut self, live: &[Member]) -> io::Result<()> {
        let indices = self.members.pickable(live);
        self.attach(indices)
    }

    /// Closes the socket of `gone` (as `remove`) with new connections kept on sockets of
    /// `live` members throughout (`Members::pickable_while_leaving`); `set_live` then
    /// points them at the new order.
    pub fn remove_steered(&mut self, gone: &Member, live: &[Member]) -> io::Result<()> {
        if self.members.index_of(gone).is_none() {
            return Ok(());
        }
        let steered = self.attach(self.members.pickable_while_leaving(gone, live));
        self.remove(gone);
        steered
    }

    fn attach(&mut self, indices: Vec<u32>) -> io::Result<()> {
        if self.attached.as_ref() == Some(&indices) {
            return Ok(());
        }
        let Some(fd) = self.fds.values().next() else {
            return Ok(());
        };
        let mut filter = program(&indices);
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_mut_ptr(),
        };
        // The program belongs to the whole group, whichever socket it is attached to.
        setsockopt(fd, sockopt::AttachReusePortCbpf, &prog)?;
        self.attached = Some(indices);
        Ok(())
    }

    /// How many connections wait in `m`'s accept queue (TCP_INFO's `tcpi_unacked` on a
    /// listening socket); `None` when `m` has no socket here.
    pub fn queued(&self, m: &Member) -> Option<io::Result<u32>> {
        self.fds.get(m).map(|fd| accept_queue(fd.as_fd()))
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// The length of a listening socket's accept queue: on a socket in LISTEN state the
/// kernel reports it in `tcpi_unacked` (and the backlog in `tcpi_sacked`).
pub fn accept_queue(fd: BorrowedFd<'_>) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a writable buffer of `len` bytes; the kernel writes at most that.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zero-initialised and (partly) filled by the kernel: every field is valid.
    Ok(unsafe { info.assume_init() }.tcpi_unacked)
}

impl Default for Group {
    fn default() -> Group {
        Group::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(slot: u32) -> Member {
        Member::new("web", slot)
    }

    #[test]
    fn indices_follow_the_kernels_order_of_joining_and_leaving() {
        let mut g = Members::default();
        // (operation, slot, the order after it)
        let table: [(&str, u32, &[u32]); 6] = [
            ("join", 0, &[0]),
            ("join", 1, &[0, 1]),
            ("join", 2, &[0, 1, 2]),
            // The last moves into the place of the one that left.
            ("leave", 0, &[2, 1]),
            ("join", 3, &[2, 1, 3]),
            ("leave", 3, &[2, 1]),
        ];
        for (op, slot, want) in table {
            match op {
                "join" => {
                    g.join(m(slot));
                }
                _ => g.leave(&m(slot)),
            }
            let order: Vec<u32> = g.order.iter().map(|x| x.slot).collect();
            assert_eq!(order, want, "after {op} {slot}");
        }
    }

    #[test]
    fn only_live_members_are_picked_and_every_one_when_none_is() {
        let mut g = Members::default();
        for s in 0..3 {
            g.join(m(s));
        }
        let table: [(&[u32], &[u32]); 4] = [
            (&[0, 1, 2], &[0, 1, 2]),
            (&[2, 0], &[0, 2]),
            (&[1], &[1]),
            (&[], &[0, 1, 2]),
        ];
        for (live, want) in table {
            let live: Vec<Member> = live.iter().map(|&s| m(s)).collect();
            assert_eq!(g.pickable(&live), want, "live {live:?}");
        }
    }

    #[test]
    fn while_a_socket_leaves_only_live_ones_it_does_not_move_are_picked() {
        let mut g = Members::default();
        for s in 0..4 {
            g.join(m(s));
        }
        // (leaving, live, picked while it leaves)
        let table: [(u32, &[u32], &[u32]); 6] = [
            // The reload seen resetting a connection: old 0 leaves, new 2 and 3 live; 3
            // takes index 0 and would be out of range.
            (0, &[2, 3], &[2]),
            (1, &[0, 2, 3], &[0, 2]),
            // The last leaving moves nobody.
            (3, &[0, 1], &[0, 1]),
            (3, &[0, 3], &[0]),
            // Every live one moves: nothing steady to pick.
            (0, &[3], &[3]),
            (2, &[], &[0, 1, 2, 3]),
        ];
        for (gone, live, want) in table {
            let live: Vec<Member> = live.iter().map(|&s| m(s)).collect();
            assert_eq!(
                g.pickable_while_leaving(&m(gone), &live),
                want,
                "{gone} leaving, live {live:?}"
            );
        }
        assert_eq!(g.pickable_while_leaving(&m(9), &[m(1)]), vec![1]);
    }

    #[test]
    fn the_program_returns_each_pickable_index_for_its_share_of_random_numbers() {
        for indices in [vec![0u32], vec![0, 2], vec![4, 1, 3], (0..10).collect()] {
            let prog = program(&indices);
            let mut seen = [0usize; 16];
            for r in 0..(indices.len() as u32 * 100) {
                // IPv4 from 10.0.0.1, and IPv6 (whatever its bytes at offset 12 are).
                seen[run(&prog, 0x0800, 0x0a00_0001, r) as usize] += 1;
                assert_eq!(
                    run(&prog, 0x0800, 0x0a00_0001, r),
                    run(&prog, 0x86dd, PROBE_NET | 3, r)
                );
            }
            for (i, n) in seen.iter().enumerate() {
                let want = if indices.contains(&(i as u32)) {
                    100
                } else {
                    0
                };
                assert_eq!(*n, want, "index {i} of {indices:?}");
            }
        }
    }

    #[test]
    fn a_probe_goes_to_the_socket_its_source_names_whatever_is_live() {
        for indices in [vec![0u32], vec![2], (0..10).collect::<Vec<u32>>()] {
            let prog = program(&indices);
            for index in [0usize, 1, 5, 300, 1023] {
                let source = u32::from(probe_source(index));
                for r in 0..20 {
                    assert_eq!(run(&prog, 0x0800, source, r), index as u32);
                }
            }
        }
        assert_eq!(probe_source(258).to_string(), "127.77.1.2");
    }

    #[test]
    fn the_kernel_steers_a_probe_to_the_socket_of_its_index() {
        use std::net::{TcpListener, TcpStream};
        // Three sockets on one port; only the first is live.
        let first = super::super::bind_listener(super::super::ListenAddr {
            host: None,
            port: 0,
        })
        .unwrap();
        let port = TcpListener::from(first.try_clone().unwrap())
            .local_addr()
            .unwrap()
            .port();
        let addr = super::super::ListenAddr { host: None, port };
        let mut group = Group::new();
        group.add(m(0), first);
        group.add(m(1), super::super::bind_listener(addr).unwrap());
        group.add(m(2), super::super::bind_listener(addr).unwrap());
        group.set_live(&[m(0)]).unwrap();
        let connect_from = |index: usize| {
            let s = socket2_connect(probe_source(index), port);
            s.expect("a probe connects")
        };
        let mut keep: Vec<TcpStream> = (0..3)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        keep.extend([2, 1, 2].map(connect_from));
        let queued = |slot: u32| -> u32 {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            loop {
                let n = group.queued(&m(slot)).unwrap().unwrap();
                if std::time::Instant::now() > deadline || n > 0 {
                    return n;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        };
        assert_eq!([queued(0), queued(1), queued(2)], [3, 1, 2]);
    }

    /// A TCP connection to 127.0.0.1:`port` from `source` (any source port).
    fn socket2_connect(source: std::net::Ipv4Addr, port: u16) -> io::Result<std::net::TcpStream> {
        use nix::sys::socket::{
            bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn,
        };
        use std::os::fd::AsRawFd;
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        bind(
            fd.as_raw_fd(),
            &SockaddrIn::from(std::net::SocketAddrV4::new(source, 0)),
        )?;
        let to = std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port);
        connect(fd.as_raw_fd(), &SockaddrIn::from(to))?;
        Ok(std::net::TcpStream::from(fd))
    }
}
