//! Log rotation of the files hotrun writes (`log_max_size`, `log_retain`): when a record
//! would take a file past its size, the file is renamed to `<name>.1` (the previous `.1`
//! to `.2`, and so on; the one past `log_retain` is deleted, as logrotate numbers them)
//! and a new file is started. Rotation happens between two records, so a line is never
//! torn, and the renames are done where the lines are written, so none is lost.

use std::io;
use std::path::{Path, PathBuf};

/// When and how far the files of one app rotate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub max_size: u64,
    pub retain: u32,
}

/// Whether a file of `size` bytes must rotate before a record of `len` bytes is written.
/// A record larger than the limit goes into an empty file whole.
pub fn due(rotation: Option<Rotation>, size: u64, len: usize) -> bool {
    rotation.is_some_and(|r| size > 0 && size + len as u64 > r.max_size)
}

/// `<path>.<n>`.
pub fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
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

/// Rotates `path`: drops the oldest kept file, shifts the others, moves `path` to `.1`.
pub fn rotate(path: &Path, retain: u32) -> io::Result<()> {
    match std::fs::remove_file(numbered(path, retain)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    for (from, to) in plan(path, retain) {
        match std::fs::rename(&from, &to) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_rotates_before_the_record_that_would_pass_its_size() {
        let r = Some(Rotation {
            max_size: 100,
            retain: 3,
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
        for n in 1..=5 {
            std::fs::write(&p, format!("{n}\n")).unwrap();
            rotate(&p, 3).unwrap();
        }
        let read = |n| std::fs::read_to_string(numbered(&p, n)).unwrap();
        assert_eq!(
            (read(1), read(2), read(3)),
            ("5\n".into(), "4\n".into(), "3\n".into())
        );
        assert!(!numbered(&p, 4).exists() && !p.exists());
    }
}
