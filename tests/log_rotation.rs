//! Log rotation of the files hotrun writes: `log_max_size`, `log_retain` and
//! `log_compress` under a flood of 30 MB, and `hotrun logs` reading across the rotated
//! files.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Lines of the flood: 315,000 of 96 bytes, 30.2 MB.
const LINES: u64 = 315_000;

/// Runs the flood app (`LINES` numbered lines of 96 bytes) with these log keys; returns its folder
/// once every line is written and every rotation finished.
fn flood(keys: &str) -> (tempfile::TempDir, Hotrun) {
    let dir = config_dir(&format!(
        "module.exports = {{ apps: [{{ name: 'flood', script: '{}', autorestart: false,
           out_file: 'logs/out.log', error_file: 'logs/err.log', merge_logs: true, log_max_size: '1M', log_retain: 3,
           env: {{ FLOOD_LINES: {LINES}, FLOOD_WIDTH: 100 }}, {keys} }}] }};\n",
        app("flood.js")
    ));
    let h = Hotrun::start_quiet(Command::new(HOTRUN).current_dir(dir.path()));
    let logs = dir.path().join("logs");
    wait_until("the flood is written and rotated", || {
        let done = std::fs::read_to_string(logs.join("out.log"))
            .is_ok_and(|t| t.ends_with("flood done\n"));
        let staged = std::fs::read_dir(&logs).map_or(true, |d| {
            d.flatten().any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.contains(".rotating-") || name.ends_with(".partial")
            })
        });
        done && !staged
    });
    (dir, h)
}

/// Checks the files, oldest first: each at most 1 MB (the rotated ones nearly full), every
/// line whole, and across them the newest lines, every one, in order, up to the last.
fn check(files: &[(PathBuf, String)]) {
    let mut numbers = Vec::new();
    for (i, (path, text)) in files.iter().enumerate() {
        let size = text.len() as u64;
        assert!(size <= 1 << 20, "{path:?} is {size} bytes");
        if i + 1 < files.len() {
            assert!(
                size > (1 << 20) - 200,
                "{path:?} was rotated early: {size} bytes"
            );
        }
        for line in text.lines().filter(|l| *l != "flood done") {
            assert_eq!(line.len(), 95, "{path:?}: torn line {line:?}");
            numbers.push(line.split(' ').nth(1).unwrap().parse::<u64>().unwrap());
        }
    }
    assert_eq!(*numbers.last().unwrap(), LINES - 1);
    let first = numbers[0];
    assert!(
        first > LINES - 50_000,
        "the newest lines are kept: from {first}"
    );
    assert!(
        numbers == (first..LINES).collect::<Vec<u64>>(),
        "lines missing or out of order"
    );
}

/// `hotrun logs flood --lines N`, more than the runner keeps in memory (1,000) and more
/// than the current file holds: the last N lines, whole and in order, read across the
/// newest rotated files.
fn check_logs_command(dir: &Path, current: &str) {
    let asked = 20_000;
    let in_current = current.lines().count();
    assert!(
        in_current < asked,
        "the current file holds {in_current} lines"
    );
    let out = hotrun_cmd(dir, &["logs", "flood", "--lines", &asked.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let messages: Vec<&str> = text
        .lines()
        .map(|l| {
            l.split_once(" | ")
                .unwrap_or_else(|| panic!("no label: {l:?}"))
                .1
        })
        .collect();
    assert_eq!(messages.len(), asked, "lines printed");
    assert_eq!(*messages.last().unwrap(), "flood done");
    let numbers: Vec<u64> = messages[..asked - 1]
        .iter()
        .map(|m| m.split(' ').nth(1).unwrap().parse().unwrap())
        .collect();
    let first = LINES - (asked as u64 - 1);
    assert!(
        numbers == (first..LINES).collect::<Vec<u64>>(),
        "the last {asked} lines in order, from {first}: got {}..{}",
        numbers[0],
        numbers.last().unwrap()
    );
}

fn logs(dir: &Path, name: &str) -> PathBuf {
    dir.join("logs").join(name)
}

#[test]
fn a_30_mb_flood_rotates_into_retain_files_of_whole_lines_in_order() {
    let (dir, _h) = flood("");
    assert!(
        !logs(dir.path(), "out.log.4").exists(),
        "log_retain: 3 keeps 3 rotated files"
    );
    let files: Vec<(PathBuf, String)> = ["out.log.3", "out.log.2", "out.log.1", "out.log"]
        .iter()
        .map(|n| {
            let p = logs(dir.path(), n);
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
            (p, text)
        })
        .collect();
    check(&files);
    check_logs_command(dir.path(), &files[3].1);
}

#[test]
fn with_log_compress_the_rotated_files_are_valid_gzip() {
    let (dir, _h) = flood("log_compress: true");
    assert!(!logs(dir.path(), "out.log.4.gz").exists());
    assert!(
        !logs(dir.path(), "out.log.1").exists(),
        "rotated files are compressed"
    );
    let mut files = Vec::new();
    for n in ["out.log.3.gz", "out.log.2.gz", "out.log.1.gz"] {
        let p = logs(dir.path(), n);
        let f = std::fs::File::open(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
        let mut text = String::new();
        flate2::read::GzDecoder::new(f)
            .read_to_string(&mut text)
            .unwrap_or_else(|e| panic!("{p:?} is not valid gzip: {e}"));
        assert!(
            std::fs::metadata(&p).unwrap().len() < (1 << 20) / 4,
            "{p:?} compressed"
        );
        files.push((p, text));
    }
    let current = logs(dir.path(), "out.log");
    files.push((current.clone(), std::fs::read_to_string(&current).unwrap()));
    check(&files);
    check_logs_command(dir.path(), &files[3].1);
}
