//! Log rotation of the files hotrun writes (`log_max_size`, `log_retain`, `log_compress`):
//! when a record would take a file past its size, the file becomes `<name>.1` (the
//! previous `.1` becomes `.2`, and so on; the one past `log_retain` is deleted, as
//! logrotate numbers them; `.gz` added when compressed) and a new file is started.
//! Rotation happens between two records, so a line is never torn, and none is lost: the
//! event loop only renames the full file aside (`<name>.rotating-<n>`, one rename) and
//! goes on writing into a new one; a thread of its own shifts the numbered files and
//! compresses, one rotation after the other, in order, so the loop never waits for gzip.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// When and how far the files of one app rotate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Rotation {
    pub max_size: u64,
    pub retain: u32,
    /// gzip the rotated files (`<name>.1.gz`, ...).
    pub compress: bool,
}

/// Whether a file of `size` bytes must rotate before a record of `len` bytes is written.
/// A record larger than the limit goes into an empty file whole.
pub fn due(rotation: Option<Rotation>, size: u64, len: usize) -> bool {
    rotation.is_some_and(|r| size > 0 && size + len as u64 > r.max_size)
}

/// `<path><suffix>`.
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// `<path>.<n>`.
pub fn numbered(path: &Path, n: u32) -> PathBuf {
    suffixed(path, &format!(".{n}"))
}

/// The renames that rotate `path`, in the order to do them: the oldest first (onto the
/// one past `retain`, which is then deleted).
pub fn plan(path: &Path, retain: u32) -> Vec<(PathBuf, PathBuf)> {
    let mut moves: Vec<(PathBuf, PathBuf)> = (1..retain)
        .rev()
        .map(|n| (numbered(path, n), numbered(path, n + 1)))
        .collect();
    moves.push((path.to_path_buf(), numbered(path, 1)));
    moves
}

fn rename_if_there(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Deletes `<path>.<retain><suffix>` and moves each kept file one number up.
fn shift(path: &Path, retain: u32, suffix: &str) -> io::Result<()> {
    match std::fs::remove_file(suffixed(&numbered(path, retain), suffix)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    for (from, to) in plan(path, retain) {
        if from != path {
            rename_if_there(&suffixed(&from, suffix), &suffixed(&to, suffix))?;
        }
    }
    Ok(())
}

/// One rotation for the worker: `staged` (the full file, renamed aside) becomes `path`'s
/// `.1`.
struct Job {
    path: PathBuf,
    staged: PathBuf,
    retain: u32,
    compress: bool,
}

fn finish(job: &Job) -> io::Result<()> {
    if !job.compress {
        shift(&job.path, job.retain, "")?;
        return rename_if_there(&job.staged, &numbered(&job.path, 1));
    }
    shift(&job.path, job.retain, ".gz")?;
    let target = suffixed(&numbered(&job.path, 1), ".gz");
    let partial = suffixed(&target, ".partial");
    {
        let mut input = std::fs::File::open(&job.staged)?;
        let output = std::fs::File::create(&partial)?;
        let mut gz = flate2::write::GzEncoder::new(output, flate2::Compression::fast());
        io::copy(&mut input, &mut gz)?;
        gz.finish()?.sync_all()?;
    }
    std::fs::rename(&partial, &target)?;
    std::fs::remove_file(&job.staged)
}

/// Rotates files: the quick rename here, the rest on a worker thread, in order.
#[derive(Default)]
pub struct Rotator {
    worker: Option<(mpsc::Sender<Job>, JoinHandle<()>)>,
    staged: u64,
}

impl Rotator {
    /// Moves `path` aside now (a new file can be opened at once) and has the worker make
    /// it `.1` (`.1.gz`).
    pub fn rotate(&mut self, path: &Path, rotation: Rotation) -> io::Result<()> {
        self.staged += 1;
        let staged = suffixed(path, &format!(".rotating-{}", self.staged));
        std::fs::rename(path, &staged)?;
        let job = Job {
            path: path.to_path_buf(),
            staged,
            retain: rotation.retain,
            compress: rotation.compress,
        };
        let (tx, _) = self.worker.get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            let handle = std::thread::Builder::new()
                .name("hotrun-logrotate".into())
                .spawn(move || {
                    for job in rx {
                        if let Err(e) = finish(&job) {
                            super::say(&format!(
                                "cannot finish the rotation of {} (its lines are in {}): {e}",
                                job.path.display(),
                                job.staged.display()
                            ));
                        }
                    }
                })
                .expect("spawn the log rotation thread");
            (tx, handle)
        });
        tx.send(job)
            .map_err(|_| io::Error::other("the log rotation thread is gone"))
    }
}

impl Drop for Rotator {
    /// Waits for the rotations still queued (hotrun is stopping).
    fn drop(&mut self) {
        if let Some((tx, handle)) = self.worker.take() {
            drop(tx);
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_rotates_before_the_record_that_would_pass_its_size() {
        let r = Some(Rotation {
            max_size: 100,
            retain: 3,
            compress: false,
        });
        // (rotation, size now, record length, due)
        let table = [
            (r, 0, 10, false),
            (r, 90, 10, false),
            (r, 91, 10, true),
            (r, 0, 500, false), // too big for any file: written whole into an empty one
            (r, 1, 500, true),
            (None, 1 << 40, 10, false),
        ];
        for (rotation, size, len, want) in table {
            assert_eq!(due(rotation, size, len), want, "{size} + {len}");
        }
    }

    #[test]
    fn renames_go_oldest_first_and_keep_retain_files() {
        let p = Path::new("/l/out.log");
        let names = |v: Vec<(PathBuf, PathBuf)>| -> Vec<(String, String)> {
            v.into_iter()
                .map(|(a, b)| (a.display().to_string(), b.display().to_string()))
                .collect()
        };
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            names(plan(p, 3)),
            [
                s("/l/out.log.2", "/l/out.log.3"),
                s("/l/out.log.1", "/l/out.log.2"),
                s("/l/out.log", "/l/out.log.1"),
            ]
        );
        assert_eq!(names(plan(p, 1)), [s("/l/out.log", "/l/out.log.1")]);
    }

    #[test]
    fn rotating_on_disk_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.log");
        let rotation = Rotation {
            max_size: 1,
            retain: 3,
            compress: false,
        };
        let mut r = Rotator::default();
        for n in 1..=5 {
            std::fs::write(&p, format!("{n}\n")).unwrap();
            r.rotate(&p, rotation).unwrap();
        }
        drop(r);
        let read = |n| std::fs::read_to_string(numbered(&p, n)).unwrap();
        assert_eq!(
            (read(1), read(2), read(3)),
            ("5\n".into(), "4\n".into(), "3\n".into())
        );
        assert!(!numbered(&p, 4).exists() && !p.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
    }
}

#[cfg(test)]
mod worker_tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_worker_shifts_and_compresses_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.log");
        let rotation = Rotation {
            max_size: 1,
            retain: 2,
            compress: true,
        };
        let mut r = Rotator::default();
        for n in 1..=4 {
            std::fs::write(&p, format!("{n}\n")).unwrap();
            r.rotate(&p, rotation).unwrap();
        }
        drop(r);
        let gunzip = |n: u32| {
            let f = std::fs::File::open(suffixed(&numbered(&p, n), ".gz")).unwrap();
            let mut text = String::new();
            flate2::read::GzDecoder::new(f)
                .read_to_string(&mut text)
                .unwrap();
            text
        };
        assert_eq!((gunzip(1), gunzip(2)), ("4\n".into(), "3\n".into()));
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".1.gz") && !n.ends_with(".2.gz"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
