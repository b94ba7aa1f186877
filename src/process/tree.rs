//! An instance's whole tree: its process group, plus the descendants that left the group
//! (`setsid`, Node's `detached: true`), which group signals miss. Every instance is started
//! with `HOTRUN_TOKEN` (its run serial) and `HOTRUN_CONTROL` (this hotrun's control socket)
//! and its descendants inherit them, so a process whose environment holds both belongs to
//! that run, wherever it went: its parent may be gone (it is then hotrun's, the subreaper).
//! One pass over /proc (an `Index`) answers for every run at once.

use std::path::Path;
use std::time::Instant;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The run serial a process environment (NUL-separated, as /proc/PID/environ) belongs to,
/// if it carries the hotrun of `control` (its `HOTRUN_CONTROL=` entry, already built).
pub fn run_of(environ: &[u8], control: &[u8]) -> Option<u64> {
    let mut serial = None;
    let mut ours = false;
    for entry in environ.split(|&b| b == 0) {
        if let Some(token) = entry.strip_prefix(b"HOTRUN_TOKEN=") {
            serial = std::str::from_utf8(token).ok().and_then(|t| t.parse().ok());
        } else if entry == control {
            ours = true;
        }
    }
    serial.filter(|_| ours)
}

/// One process of this hotrun's runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Marked {
    pid: i32,
    serial: u64,
    pgid: i32,
}

/// Every live process (zombies have no environment) that carries this hotrun's marker,
/// but the calling process, as one pass over /proc saw them at `taken`.
#[derive(Debug, Clone)]
pub struct Index {
    pub taken: Instant,
    procs: Vec<Marked>,
}

impl Index {
    pub fn scan(control_socket: &Path) -> Index {
        let control = format!("HOTRUN_CONTROL={}", control_socket.display()).into_bytes();
        let me = std::process::id() as i32;
        let mut procs = Vec::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<i32>().ok())
                else {
                    continue;
                };
                // Another user's processes cannot be read, and are none of hotrun's.
                let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
                    continue;
                };
                let Some(serial) = run_of(&environ, &control).filter(|_| pid != me) else {
                    continue;
                };
                if let Ok(pgid) = nix::unistd::getpgid(Some(Pid::from_raw(pid))) {
                    procs.push(Marked {
                        pid,
                        serial,
                        pgid: pgid.as_raw(),
                    });
                }
            }
        }
        Index {
            taken: Instant::now(),
            procs,
        }
    }

    /// An index that found nothing (the supervisor's glue tests start no process).
    #[cfg(test)]
    pub fn empty(taken: Instant) -> Index {
        Index {
            taken,
            procs: Vec::new(),
        }
    }

    /// The processes of run `serial` outside its group `pgid`.
    pub fn escaped(&self, serial: u64, pgid: i32) -> Vec<i32> {
        self.procs
            .iter()
            .filter(|m| m.serial == serial && m.pgid != pgid)
            .map(|m| m.pid)
            .collect()
    }

    /// Every process of every run.
    pub fn all(&self) -> Vec<i32> {
        self.procs.iter().map(|m| m.pid).collect()
    }
}

/// Sends `sig` to each of `pids` (a run's descendants that left its group).
pub fn signal(pids: &[i32], sig: Signal) {
    for &pid in pids {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_known_by_its_token_and_its_hotrun() {
        let control = b"HOTRUN_CONTROL=/run/hotrun/a/control.sock";
        let cases: Vec<(&[u8], Option<u64>)> = vec![
            (
                b"A=1\0HOTRUN_TOKEN=7\0HOTRUN_CONTROL=/run/hotrun/a/control.sock\0",
                Some(7),
            ),
            (
                b"HOTRUN_CONTROL=/run/hotrun/a/control.sock\0HOTRUN_TOKEN=70",
                Some(70),
            ),
            // Another hotrun's run, a hotrun without a run, a token that is no number.
            (
                b"HOTRUN_TOKEN=7\0HOTRUN_CONTROL=/run/hotrun/b/control.sock\0",
                None,
            ),
            (b"HOTRUN_CONTROL=/run/hotrun/a/control.sock\0", None),
            (
                b"HOTRUN_TOKEN=x\0HOTRUN_CONTROL=/run/hotrun/a/control.sock\0",
                None,
            ),
            (b"HOTRUN_TOKEN=7\0", None),
            (b"", None),
        ];
        for (environ, want) in cases {
            let shown = String::from_utf8_lossy(environ).into_owned();
            assert_eq!(run_of(environ, control), want, "{shown}");
        }
    }

    #[test]
    fn a_detached_descendant_is_found_outside_its_group_and_signalled() {
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
        // `spawn` can return before the child's exec: until then /proc shows the test's
        // own environment. Wait for the exec'd one (this machine took up to 100 ms).
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        let marked = |pid: i32| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|e| {
                run_of(&e, b"HOTRUN_CONTROL=/tmp/hotrun-tree-test/control.sock").is_some()
            })
        };
        while !marked(pid) {
            assert!(Instant::now() < deadline, "sleep {pid} never exec'd");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let index = Index::scan(control);
        assert_eq!(index.escaped(424242, group), vec![pid]);
        assert_eq!(index.all(), vec![pid]);
        assert!(
            index.escaped(424242, pid).is_empty(),
            "members of the group are the group's"
        );
        assert!(index.escaped(1, group).is_empty(), "another run's");
        signal(&index.escaped(424242, group), Signal::SIGKILL);
        super::super::group::signal(group, Signal::SIGKILL);
        leader.wait().unwrap();
        detached.wait().unwrap();
        assert!(Index::scan(control).all().is_empty());
    }
}
