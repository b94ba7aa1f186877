//! The runtime folder of one hotrun: its control socket, the instances' notify sockets and
//! the Node preload module. One folder per ecosystem file (named by a hash of its absolute
//! path), so two projects on one machine never share a socket; mode 0700 under a base
//! folder only the user can enter (`$XDG_RUNTIME_DIR/hotrun`, else `/tmp/hotrun-<uid>`).

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The source of the preload module, written into the runtime folder at start.
pub const PRELOAD_JS: &str = include_str!("node/preload.js");

#[derive(Debug, Clone)]
pub struct RuntimeDir {
    pub path: PathBuf,
}

/// FNV-1a, 64 bits: a stable name for a config path across hotrun builds.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn base() -> PathBuf {
    if let Some(dir) = std::env::var_os("HOTRUN_RUNTIME_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR") {
        let xdg = PathBuf::from(xdg);
        if xdg.is_dir() {
            return xdg.join("hotrun");
        }
    }
    PathBuf::from(format!("/tmp/hotrun-{}", nix::unistd::getuid()))
}

impl RuntimeDir {
    /// Where the folder of `config` is (it may not exist).
    pub fn of(config: &Path) -> RuntimeDir {
        let name = format!("{:016x}", fnv1a(config.as_os_str().as_encoded_bytes()));
        RuntimeDir {
            path: base().join(name),
        }
    }

    /// Creates the folder (and its base) with mode 0700, refusing a base owned by another
    /// user, and writes the preload module.
    pub fn create(config: &Path) -> io::Result<RuntimeDir> {
        let dir = RuntimeDir::of(config);
        let base = dir
            .path
            .parent()
            .expect("runtime dir has a parent")
            .to_path_buf();
        for folder in [&base, &dir.path] {
            match fs::DirBuilder::new().mode(0o700).create(folder) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            let meta = fs::symlink_metadata(folder)?;
            if !meta.is_dir() || meta.uid() != nix::unistd::getuid().as_raw() {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{} is not a folder of this user; remove it or set HOTRUN_RUNTIME_DIR",
                        folder.display()
                    ),
                ));
            }
            if meta.mode() & 0o077 != 0 {
                fs::set_permissions(folder, fs::Permissions::from_mode(0o700))?;
            }
        }
        write_private(&dir.preload(), PRELOAD_JS.as_bytes())?;
        Ok(dir)
    }

    /// The control sockets of every hotrun of this user (stale ones included: a hotrun
    /// that was SIGKILLed leaves its socket).
    pub fn all_control_sockets() -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(base()) else {
            return Vec::new();
        };
        let mut sockets: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path().join("control.sock"))
            .filter(|s| s.exists())
            .collect();
        sockets.sort();
        sockets
    }

    pub fn control_socket(&self) -> PathBuf {
        self.path.join("control.sock")
    }

    pub fn preload(&self) -> PathBuf {
        self.path.join("preload.js")
    }

    /// The `NOTIFY_SOCKET` of the instance run with this serial.
    pub fn notify_socket(&self, serial: u64) -> PathBuf {
        self.path.join(format!("n{serial}.sock"))
    }
}

/// Writes a file readable only by the user (replacing what was there).
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_config_gets_its_own_folder() {
        let a = RuntimeDir::of(Path::new("/srv/a/ecosystem.config.js"));
        let b = RuntimeDir::of(Path::new("/srv/b/ecosystem.config.js"));
        assert_ne!(a.path, b.path);
        assert_eq!(
            a.path,
            RuntimeDir::of(Path::new("/srv/a/ecosystem.config.js")).path
        );
        // sun_path holds 108 bytes.
        assert!(a.notify_socket(u64::MAX).as_os_str().len() < 108);
    }

    #[test]
    fn fnv1a_is_the_published_function() {
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
    }
}
