//! What a running hotrun hands to the binary it execs into (`hotrun upgrade`): every
//! instance with its pid, serial, slot and history, the sockets and which descriptors
//! hold them, each instance's IPC channel, notify socket and output pipes (with what was
//! read from them and not yet written), and what keeps the runner itself going (its
//! control socket, the guard, the HTTP endpoint). Plain data, versioned by `FORMAT`,
//! written as JSON into a sealed memfd whose number the new process finds in its
//! environment.

use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::sockets::reuseport::Member;
use crate::sockets::ListenAddr;

/// The layout of `State` this binary writes and reads. A state of a later format is
/// refused (the new binary falls back to the old one).
pub const FORMAT: u32 = 1;

/// The memfd holding the state.
pub const STATE_ENV: &str = "HOTRUN_UPGRADE_STATE";
/// A descriptor of the binary that wrote the state, to fall back to.
pub const FROM_ENV: &str = "HOTRUN_UPGRADE_FROM";
/// Set on the fallback: why the new binary refused the state.
pub const FALLBACK_ENV: &str = "HOTRUN_UPGRADE_FALLBACK";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub format: u32,
    /// The version of the hotrun that wrote it.
    pub from_version: String,
    /// Set by the hidden `hotrun upgrade --refuse-state` (a test of the fallback): 1, the
    /// new side refuses it, as it would a state it cannot read; 2, the old side too.
    #[serde(default)]
    pub refuse: u8,
    pub control_fd: RawFd,
    pub http_fd: Option<RawFd>,
    pub guard: Option<SavedGuard>,
    pub groups: Vec<SavedGroup>,
    pub apps: Vec<SavedApp>,
    pub runs: Vec<SavedRun>,
    pub next_serial: u64,
    pub next_lane: u64,
    /// The next pm_id (`NODE_APP_INSTANCE` numbering across apps, log file names).
    #[serde(default)]
    pub next_pm_id: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedGuard {
    pub pid: i32,
    pub fd: RawFd,
}

/// The sockets of one address, in the kernel's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedGroup {
    pub addr: ListenAddr,
    pub members: Vec<(Member, RawFd)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedApp {
    pub name: String,
    pub ports: Vec<ListenAddr>,
    pub reloads: u32,
    pub last_reload: Option<SavedReload>,
    pub slots: Vec<SavedSlot>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedReload {
    pub trigger: String,
    pub ok: bool,
    /// RFC 3339.
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedSlot {
    pub id: u32,
    pub pm_id: u32,
    pub lane: u64,
    pub reloads: u32,
    pub restarts: u32,
    pub short_runs: u32,
    pub backoff_ms: Option<u64>,
    pub phase: SavedPhase,
}

/// The slot phases an upgrade carries over (it waits for the others to pass).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum SavedPhase {
    /// To be started at this time (the end of a restart delay), in ms since the epoch:
    /// the wall clock, so that the time the exec takes is counted.
    Pending {
        at_unix_ms: u64,
    },
    Online {
        serial: u64,
        pid: i32,
        /// When it started, in ms since the epoch.
        started_unix_ms: u64,
        ready_by: String,
    },
    Errored {
        exit: SavedExit,
    },
    Stopped {
        exit: Option<SavedExit>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SavedExit {
    Code(i32),
    Signal(i32),
}

/// One running process of an instance and what hotrun holds of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedRun {
    pub serial: u64,
    pub app: String,
    pub slot: u32,
    pub member: Member,
    pub held: Vec<ListenAddr>,
    pub ipc_fd: RawFd,
    /// `None` once the instance closed it.
    pub stdout: Option<SavedPipe>,
    pub stderr: Option<SavedPipe>,
    pub notify: Option<(PathBuf, RawFd)>,
    pub stderr_tail: Vec<String>,
}

/// An output pipe, and the bytes read from it that no line was made of yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPipe {
    pub fd: RawFd,
    pub pending: Vec<u8>,
}

impl State {
    /// Every descriptor the state names: they must survive the exec.
    pub fn fds(&self) -> Vec<RawFd> {
        let mut fds = vec![self.control_fd];
        fds.extend(self.http_fd);
        fds.extend(self.guard.as_ref().map(|g| g.fd));
        for g in &self.groups {
            fds.extend(g.members.iter().map(|(_, fd)| *fd));
        }
        for r in &self.runs {
            fds.push(r.ipc_fd);
            fds.extend([&r.stdout, &r.stderr].into_iter().flatten().map(|p| p.fd));
            fds.extend(r.notify.as_ref().map(|(_, fd)| *fd));
        }
        fds
    }
}

/// Why a state is not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Unreadable(String),
    Newer { format: u32 },
    Refused,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Unreadable(e) => write!(f, "its state does not parse ({e})"),
            Refusal::Newer { format } => write!(
                f,
                "its state is of format {format}, newer than this hotrun reads ({FORMAT})"
            ),
            Refusal::Refused => write!(f, "its state was marked to be refused (--refuse-state)"),
        }
    }
}

/// Reads a state; `fallback` (the binary that wrote it takes it back) takes a refused one.
pub fn parse(bytes: &[u8], fallback: bool) -> Result<State, Refusal> {
    #[derive(Deserialize)]
    struct Head {
        format: u32,
    }
    let head: Head =
        serde_json::from_slice(bytes).map_err(|e| Refusal::Unreadable(e.to_string()))?;
    if head.format > FORMAT {
        return Err(Refusal::Newer {
            format: head.format,
        });
    }
    let state: State =
        serde_json::from_slice(bytes).map_err(|e| Refusal::Unreadable(e.to_string()))?;
    if state.refuse >= 2 || (state.refuse == 1 && !fallback) {
        return Err(Refusal::Refused);
    }
    Ok(state)
}

/// The state in a sealed memfd (close-on-exec until the exec clears it).
pub fn seal(state: &State) -> io::Result<OwnedFd> {
    use nix::fcntl::{fcntl, FcntlArg, SealFlag};
    use nix::sys::memfd::{memfd_create, MFdFlags};
    let fd = memfd_create(
        "hotrun-upgrade-state",
        MFdFlags::MFD_ALLOW_SEALING | MFdFlags::MFD_CLOEXEC,
    )?;
    let mut file = std::fs::File::from(fd);
    file.write_all(&serde_json::to_vec(state).map_err(io::Error::other)?)?;
    let seals = SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE
        | SealFlag::F_SEAL_SEAL;
    fcntl(file.as_fd(), FcntlArg::F_ADD_SEALS(seals))?;
    Ok(OwnedFd::from(file))
}

/// The bytes of the state in memfd `fd` (left open: a fallback hands it on again).
pub fn read_fd(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let mut file = std::fs::File::from(fd.try_clone_to_owned()?);
    file.rewind()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State {
            format: FORMAT,
            from_version: "0.1.0".into(),
            refuse: 0,
            control_fd: 5,
            http_fd: None,
            guard: Some(SavedGuard { pid: 40, fd: 6 }),
            groups: vec![SavedGroup {
                addr: ListenAddr {
                    host: None,
                    port: 3000,
                },
                members: vec![(Member::new("web", 0), 7), (Member::lane("web", 1, 2), 8)],
            }],
            apps: vec![SavedApp {
                name: "web".into(),
                ports: vec![],
                reloads: 3,
                last_reload: None,
                slots: vec![SavedSlot {
                    id: 0,
                    pm_id: 0,
                    lane: 0,
                    reloads: 1,
                    restarts: 2,
                    short_runs: 0,
                    backoff_ms: None,
                    phase: SavedPhase::Online {
                        serial: 9,
                        pid: 41,
                        started_unix_ms: 1_700_000_000_000,
                        ready_by: "message".into(),
                    },
                }],
            }],
            runs: vec![SavedRun {
                serial: 9,
                app: "web".into(),
                slot: 0,
                member: Member::new("web", 0),
                held: vec![],
                ipc_fd: 10,
                stdout: Some(SavedPipe {
                    fd: 11,
                    pending: b"half a li".to_vec(),
                }),
                stderr: Some(SavedPipe {
                    fd: 12,
                    pending: vec![],
                }),
                notify: Some(("/run/n.sock".into(), 13)),
                stderr_tail: vec!["oops".into()],
            }],
            next_serial: 10,
            next_lane: 3,
            next_pm_id: 1,
        }
    }

    #[test]
    fn a_state_reads_back_through_a_sealed_memfd() {
        let s = state();
        let fd = seal(&s).unwrap();
        let bytes = read_fd(fd.as_fd()).unwrap();
        assert_eq!(parse(&bytes, false).unwrap(), s);
        assert_eq!(s.fds(), vec![5, 6, 7, 8, 10, 11, 12, 13]);
    }

    #[test]
    fn a_sealed_state_cannot_be_changed() {
        let fd = seal(&state()).unwrap();
        let mut file = std::fs::File::from(fd);
        assert!(file.write_all(b"x").is_err());
    }

    #[test]
    fn what_the_new_side_refuses_and_what_the_fallback_takes() {
        let good = serde_json::to_vec(&state()).unwrap();
        let newer = {
            let mut v = serde_json::to_value(state()).unwrap();
            v["format"] = (FORMAT + 1).into();
            serde_json::to_vec(&v).unwrap()
        };
        let marked = serde_json::to_vec(&State {
            refuse: 1,
            ..state()
        })
        .unwrap();
        let marked_twice = serde_json::to_vec(&State {
            refuse: 2,
            ..state()
        })
        .unwrap();
        let table: [(&[u8], bool, Result<(), Refusal>); 8] = [
            (&marked_twice, false, Err(Refusal::Refused)),
            (&marked_twice, true, Err(Refusal::Refused)),
            (&good, false, Ok(())),
            (&newer, false, Err(Refusal::Newer { format: FORMAT + 1 })),
            (&newer, true, Err(Refusal::Newer { format: FORMAT + 1 })),
            (&marked, false, Err(Refusal::Refused)),
            (&marked, true, Ok(())),
            (
                b"{\"format\": 1, \"apps\": 3",
                false,
                Err(Refusal::Unreadable(String::new())),
            ),
        ];
        for (bytes, fallback, want) in table {
            let got = parse(bytes, fallback).map(drop);
            match (&got, &want) {
                (Err(Refusal::Unreadable(_)), Err(Refusal::Unreadable(_))) => {}
                _ => assert_eq!(got, want, "{}", String::from_utf8_lossy(bytes)),
            }
        }
    }
}
