//! What `hotrun logs` reads from an app's log files when the runner's memory holds fewer
//! lines than asked: the last lines of a file, continued into its newest rotated ones
//! (`<name>.1` or `<name>.1.gz`, then `.2`, ...) until there are enough. The client reads
//! them, never the runner, so a long history costs the runner nothing.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::rotate::numbered;

/// The most rotated files looked at (the numbers end well before in practice).
const MAX_ROTATED: u32 = 1000;
/// Bytes read at a time, backwards, from a plain file.
const CHUNK: u64 = 64 * 1024;

/// The last `n` lines (without their newlines) of `path` and, when it holds fewer, of its
/// rotated files, oldest first. A file that does not exist holds no line.
pub fn last_lines(path: &Path, n: usize) -> io::Result<Vec<Vec<u8>>> {
    let mut lines = VecDeque::from(tail_of(path, n)?.unwrap_or_default());
    for k in 1..=MAX_ROTATED {
        if lines.len() >= n {
            break;
        }
        // A rotated file that cannot be read (corrupt, no permission) ends the history
        // there: what was read is kept.
        let Ok(Some(older)) = rotated(path, k, n - lines.len()) else {
            break;
        };
        for line in older.into_iter().rev() {
            lines.push_front(line);
        }
    }
    Ok(lines.into())
}

/// The last `n` lines of `path`'s rotated file number `k`, or None if there is no such file.
fn rotated(path: &Path, k: u32, n: usize) -> io::Result<Option<Vec<Vec<u8>>>> {
    let plain = numbered(path, k);
    let mut gz = plain.clone().into_os_string();
    gz.push(".gz");
    for candidate in [plain, PathBuf::from(gz)] {
        // `tail_of` is None only for a file that does not exist.
        if let Some(lines) = tail_of(&candidate, n)? {
            return Ok(Some(lines));
        }
    }
    Ok(None)
}

/// The last `n` lines of one file (gzip when its name ends in `.gz`), or None if it does
/// not exist.
fn tail_of(path: &Path, n: usize) -> io::Result<Option<Vec<Vec<u8>>>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let gz = path.extension().is_some_and(|e| e == "gz");
    let lines = if gz {
        tail_stream(flate2::read::GzDecoder::new(file), n)?
    } else {
        tail_plain(file, n)?
    };
    Ok(Some(lines))
}

/// Reads a stream to its end, keeping its last `n` lines.
fn tail_stream(stream: impl Read, n: usize) -> io::Result<Vec<Vec<u8>>> {
    let mut kept = VecDeque::new();
    for line in BufReader::new(stream).split(b'\n') {
        kept.push_back(line?);
        if kept.len() > n {
            kept.pop_front();
        }
    }
    Ok(kept.into())
}

/// Reads a file backwards from its end until it holds `n` whole lines, so a large file
/// costs only its tail.
fn tail_plain(mut file: File, n: usize) -> io::Result<Vec<Vec<u8>>> {
    let len = file.metadata()?.len();
    let mut start = len;
    // Chunks read, the last one first.
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    // Newlines read, but for the file's final one: with the start of the file not read,
    // each ends one whole line.
    let mut ends = 0usize;
    while start > 0 && ends < n {
        let size = CHUNK.min(start);
        start -= size;
        let mut chunk = vec![0; size as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk)?;
        ends += chunk.iter().filter(|&&b| b == b'\n').count();
        if chunks.is_empty() && chunk.ends_with(b"\n") {
            ends -= 1;
        }
        chunks.push(chunk);
    }
    chunks.reverse();
    let tail = chunks.concat();
    let text = tail.strip_suffix(b"\n").unwrap_or(&tail);
    if text.is_empty() {
        return Ok(vec![]);
    }
    let mut lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    if start > 0 {
        // The first piece began before what was read: not a whole line.
        lines.remove(0);
    }
    let skip = lines.len().saturating_sub(n);
    Ok(lines[skip..].iter().map(|l| l.to_vec()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(path: &Path, from: usize, to: usize) {
        let mut f = File::create(path).unwrap();
        for i in from..to {
            writeln!(f, "line {i:06} {}", "x".repeat(i % 50)).unwrap();
        }
    }

    fn numbers(lines: &[Vec<u8>]) -> Vec<usize> {
        lines
            .iter()
            .map(|l| {
                let text = String::from_utf8_lossy(l);
                text.split(' ').nth(1).unwrap().parse().unwrap()
            })
            .collect()
    }

    #[test]
    fn reads_the_tail_of_a_large_file_and_of_small_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        // Each case: lines in the file, lines asked, lines expected (the last ones).
        for (total, asked) in [
            (0, 5),
            (1, 5),
            (3, 3),
            (10, 4),
            (20_000, 7_000),
            (20_000, 30_000),
        ] {
            write(&path, 0, total);
            let got = numbers(&last_lines(&path, asked).unwrap());
            let want: Vec<usize> = (total.saturating_sub(asked)..total).collect();
            assert_eq!(got, want, "{total} lines, {asked} asked");
        }
    }

    #[test]
    fn a_last_line_without_newline_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        std::fs::write(&path, "a\nb\nc").unwrap();
        assert_eq!(
            last_lines(&path, 2).unwrap(),
            vec![b"b".to_vec(), b"c".to_vec()]
        );
    }

    #[test]
    fn continues_into_the_newest_rotated_files_plain_and_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        write(&path, 3000, 3100);
        write(&numbered(&path, 1), 2000, 3000);
        // .2 compressed, as log_compress leaves it.
        let mut gz = flate2::write::GzEncoder::new(
            File::create(dir.path().join("out.log.2.gz")).unwrap(),
            flate2::Compression::fast(),
        );
        for i in 1000..2000 {
            writeln!(gz, "line {i:06}").unwrap();
        }
        gz.finish().unwrap();
        write(&numbered(&path, 3), 0, 1000);
        // Asked, then the first line expected; every line up to 3099 in order.
        for (asked, first) in [
            (50, 3050),
            (100, 3000),
            (600, 2500),
            (1600, 1500),
            (5000, 0),
        ] {
            let got = numbers(&last_lines(&path, asked).unwrap());
            assert_eq!(got, (first..3100).collect::<Vec<_>>(), "{asked} asked");
        }
    }

    #[test]
    fn a_corrupt_rotated_file_ends_the_history_and_keeps_what_was_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        write(&path, 5, 8);
        std::fs::write(dir.path().join("out.log.1.gz"), b"not gzip at all").unwrap();
        assert_eq!(numbers(&last_lines(&path, 10).unwrap()), vec![5, 6, 7]);
    }

    #[test]
    fn a_missing_current_file_still_reads_the_rotated_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        write(&numbered(&path, 1), 0, 10);
        assert_eq!(numbers(&last_lines(&path, 3).unwrap()), vec![7, 8, 9]);
    }
}
