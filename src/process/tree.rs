//! An instance's whole tree: its process group, plus the descendants that left the group
//! (`setsid`, Node's `detached: true`), which group signals miss. Every instance is started
//! with `HOTRUN_TOKEN` (its run serial) and `HOTRUN_CONTROL` (this hotrun's control socket)
//! and its descendants inherit them, so a process whose environment holds both belongs to
//! that run, wherever it went: its parent may be gone (it is then hotrun's, the subreaper).

use std::path::Path;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::group;

/// The environment entries that mark one run's processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// `None`: any run of this hotrun.
    token: Option<Vec<u8>>,
    control: Vec<u8>,
}

impl Marker {
    /// The processes of run `serial`.
    pub fn new(serial: u64, control_socket: &Path) -> Marker {
        Marker {
            token: Some(format!("HOTRUN_TOKEN={serial}").into_bytes()),
            control: format!("HOTRUN_CONTROL={}", control_socket.display()).into_bytes(),
        }
    }

    /// The processes of every run of the hotrun with this control socket.
    pub fn every_run(control_socket: &Path) -> Marker {
        Marker {
            token: None,
            control: format!("HOTRUN_CONTROL={}", control_socket.display()).into_bytes(),
        }
    }

    /// Whether a process environment (NUL-separated, as /proc/PID/environ) carries it.
    pub fn is_in(&self, environ: &[u8]) -> bool {
        let mut token = false;
        let mut control = false;
        for entry in environ.split(|&b| b == 0) {
            token |= match &self.token {
                Some(t) => entry == t.as_slice(),
                None => entry.starts_with(b"HOTRUN_TOKEN="),
            };
            control |= entry == self.control.as_slice();
        }
        token && control
    }
}

/// The live processes (zombies have no environment) that carry `marker`, outside the
/// group `pgid`; hotrun itself never.
pub fn escaped(pgid: i32, marker: &Marker) -> Vec<i32> {
    marked(marker)
        .into_iter()
        .filter(|&pid| {
            nix::unistd::getpgid(Some(Pid::from_raw(pid))).ok() != Some(Pid::from_raw(pgid))
        })
        .collect()
}

/// The live processes that carry `marker`, but the calling process.
pub fn marked(marker: &Marker) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        // Another user's processes cannot be read, and are none of hotrun's.
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if marker.is_in(&environ) {
            pids.push(pid);
        }
    }
    pids
}

/// Sends `sig` to the group led by `pgid` and to the run's descendants that left it.
pub fn signal(pgid: i32, marker: &Marker, sig: Signal) {
    group::signal(pgid, sig);
    for pid in escaped(pgid, marker) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// True while the group or any descendant that left it is still there.
pub fn alive(pgid: i32, marker: &Marker) -> bool {
    group::alive(pgid) || !escaped(pgid, marker).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_known_by_both_its_token_and_its_hotrun() {
        let m = Marker::new(7, Path::new("/run/hotrun/a/control.sock"));
        let cases: Vec<(&[u8], bool)> = vec![
            (
                b"A=1\0HOTRUN_TOKEN=7\0HOTRUN_CONTROL=/run/hotrun/a/control.sock\0",
                true,
            ),
            (
                b"HOTRUN_CONTROL=/run/hotrun/a/control.sock\0HOTRUN_TOKEN=7",
                true,
            ),
            // Another run of the same hotrun, the same run number of another hotrun.
            (
                b"HOTRUN_TOKEN=70\0HOTRUN_CONTROL=/run/hotrun/a/control.sock\0",
                false,
            ),
            (
                b"HOTRUN_TOKEN=7\0HOTRUN_CONTROL=/run/hotrun/b/control.sock\0",
                false,
            ),
            (b"HOTRUN_TOKEN=7\0", false),
            (b"", false),
        ];
        for (environ, want) in cases {
            assert_eq!(
                m.is_in(environ),
                want,
                "{}",
                String::from_utf8_lossy(environ)
            );
        }
        let any = Marker::every_run(Path::new("/run/hotrun/a/control.sock"));
        assert!(any.is_in(b"HOTRUN_TOKEN=70\0HOTRUN_CONTROL=/run/hotrun/a/control.sock"));
        assert!(!any.is_in(b"HOTRUN_TOKEN=7\0HOTRUN_CONTROL=/run/hotrun/b/control.sock"));
        assert!(!any.is_in(b"HOTRUN_CONTROL=/run/hotrun/a/control.sock"));
    }

    #[test]
    fn a_detached_descendant_is_found_and_signalled_with_its_group() {
        use std::os::unix::process::CommandExt;
        let control = Path::new("/tmp/hotrun-tree-test/control.sock");
        let start = |marked: bool| {
            let mut cmd = std::process::Command::new("sleep");
            cmd.arg("30").process_group(0);
            if marked {
                cmd.env("HOTRUN_TOKEN", "424242")
                    .env("HOTRUN_CONTROL", control);
            }
            cmd.spawn().unwrap()
        };
        // The instance's group (its leader), and a descendant that left it for its own.
        let mut leader = start(false);
        let mut detached = start(true);
        let (group, pid) = (leader.id() as i32, detached.id() as i32);
        let m = Marker::new(424242, control);
        assert_eq!(escaped(group, &m), vec![pid]);
        assert!(
            escaped(pid, &m).is_empty(),
            "members of the group are the group's"
        );
        assert!(alive(group, &m));
        signal(group, &m, Signal::SIGKILL);
        leader.wait().unwrap();
        detached.wait().unwrap();
        assert!(escaped(group, &m).is_empty());
        assert!(!alive(group, &m));
    }
}
